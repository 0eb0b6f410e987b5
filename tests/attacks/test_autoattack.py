"""APGD-T's loss and start points, AutoAttack's sequence and bookkeeping, gradient-masking flags."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks
from robust_jax.attacks import attack_losses
from robust_jax.attacks.apgd import start_point
from robust_jax.attacks.sequence import _chunk_sizes, accuracy_after_each, run_sequence
from robust_jax.config import defaults as config_defaults
from robust_jax.evaluation import robustness
from tests import helpers

NUM_CLASSES = 10
TINY = attacks.AutoAttackSettings(apgd_steps=2, num_target_classes=2, fab_steps=2,
                                  square_queries=4, eot_samples=2)


@pytest.fixture(scope='module')
def linear_problem():
  """(logits_fn, images, the model's own predictions as labels): `helpers.linear_problem`."""
  logits_fn, _, images, _ = helpers.linear_problem(NUM_CLASSES)
  return logits_fn, images, jnp.argmax(logits_fn(images), -1)


def test_targeted_dlr_equals_the_formula_on_hand_logits():
  logits = jnp.array([[3.0, 1.0, 2.0, 0.0, -1.0], [0.5, 2.0, -1.0, 1.0, 0.0]])
  labels, targets = jnp.array([0, 3]), jnp.array([2, 4])
  # Sorted decreasing: row 0 (3, 2, 1, 0, -1): π1 = 3, π3 = 1, π4 = 0; row 1 (2, 1, .5, 0, -1).
  expected = [-(3.0 - 2.0) / (3.0 - (1.0 + 0.0) / 2), -(1.0 - 0.0) / (2.0 - (0.5 + 0.0) / 2)]
  np.testing.assert_allclose(attack_losses.dlr_targeted(logits, labels, targets), expected,
                             rtol=1e-6)
  # The formula it replaces, the untargeted DLR negated at the target, differs on these logits.
  assert not np.allclose(-attack_losses.dlr(logits, targets), expected)


def test_targeted_dlr_is_not_a_negated_dlr():
  with pytest.raises(ValueError, match=r"^loss='dlr' with targeted=True: targeted DLR needs the "
                                       r"true labels as well as the targets; use "):
    attack_losses.get('dlr', targeted=True)
  images, labels = jnp.full((2, 4), 0.5), jnp.array([0, 1])
  with pytest.raises(ValueError, match=r"^loss='dlr' with targeted=True"):
    attacks.pgd(lambda x: x, images, labels, jax.random.key(0), epsilon=0.1, step_size=0.1,
                num_steps=1, loss='dlr', targeted=True)


def test_apgd_targeted_at_a_large_epsilon_breaks_every_example(linear_problem):
  logits_fn, images, labels = linear_problem
  adversarial = attacks.apgd_targeted(logits_fn, images, labels, jax.random.key(0), epsilon=1.0,
                                      num_steps=10)
  assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
  assert bool(jnp.all(jnp.argmax(logits_fn(adversarial), -1) != labels))
  small = attacks.apgd_targeted(logits_fn, images, labels, jax.random.key(0), epsilon=0.01,
                                num_steps=10, num_target_classes=3)
  assert float(attacks.distance(small, images, 'linf').max()) <= 0.01 * (1 + 1e-5)


def test_apgd_targeted_refuses_what_it_cannot_do(linear_problem):
  logits_fn, images, labels = linear_problem
  call = lambda **kw: attacks.apgd_targeted(logits_fn, images, labels, jax.random.key(0),
                                            epsilon=0.1, num_steps=2, **kw)
  with pytest.raises(ValueError, match=r'^num_target_classes=10: must be an int in \[1, 9\] '):
    call(num_target_classes=10)
  with pytest.raises(ValueError, match=r'^target_labels: values range over \[\d+, 10\]'):
    call(target_labels=labels.at[0].set(10))
  three = lambda x: logits_fn(x)[:, :3]
  with pytest.raises(ValueError, match=r'^logits_fn gives C = 3: the targeted DLR loss'):
    attacks.apgd_targeted(three, images, labels % 3, jax.random.key(0), epsilon=0.1)


def _first_point(norm, epsilon, start):
  """x^0 of an APGD run, recorded where the attack first evaluates the model."""
  images = jnp.full((64, 2, 2, 3), 0.5)  # far enough from 0 and 1 that nothing is clipped
  points = []

  def logits_fn(x):
    jax.debug.callback(lambda v: points.append(np.asarray(v)), x, ordered=True)
    return x.reshape(x.shape[0], -1)[:, :4]

  attacks.apgd(logits_fn, images, jnp.zeros(64, jnp.int32), jax.random.key(1), epsilon=epsilon,
               num_steps=1, norm=norm, start=start)
  return np.asarray(attacks.distance(jnp.asarray(points[0]), images, norm))


@pytest.mark.parametrize('norm,epsilon', [('linf', 0.1), ('l2', 0.3)])
def test_apgd_starts_on_the_epsilon_sphere_and_ball_inside_it(norm, epsilon):
  np.testing.assert_allclose(_first_point(norm, epsilon, 'sphere'), epsilon, rtol=1e-5)
  inside = _first_point(norm, epsilon, 'ball')
  assert inside.max() <= epsilon * (1 + 1e-6) and inside.min() < 0.9 * epsilon


def test_linf_sphere_start_is_epsilon_u_over_its_max():
  key, images = jax.random.key(2), jnp.full((3, 5), 0.5)
  u = jax.random.uniform(key, images.shape, minval=-1.0, maxval=1.0)
  expected = 0.5 + 0.1 * u / jnp.max(jnp.abs(u), -1, keepdims=True)
  np.testing.assert_allclose(start_point(key, images, 0.1, 'linf'), expected, atol=1e-7)


# ----------------------------------------------------------------------------- the sequence
N = 20
ROW_OF = lambda x: np.rint(np.asarray(x)[:, 1] * N).astype(int)  # feature 1 encodes the example


def _classify(x, key):
  """Class = round(4 · feature 0)."""
  del key
  return jnp.rint(jnp.asarray(x)[:, 0] * 4).astype(jnp.int32)


def _stand_in(breaks, value, calls):
  """An attack that records the examples it sees and moves those in `breaks` to feature 0 =
  `value` (another class); it would also 'break' examples an earlier attack broke."""
  def attack(images, labels, key):
    del labels, key
    rows = ROW_OF(images)
    calls.append(set(rows.tolist()))
    return jnp.asarray(images).at[:, 0].set(
        jnp.where(jnp.isin(jnp.asarray(rows), jnp.asarray(sorted(breaks))), value, images[:, 0]))
  return attack


def test_sequence_attacks_only_the_still_robust_and_keeps_the_first_break():
  labels = np.array([i % 3 for i in range(N)], np.int32)
  images = np.stack([labels / 4, np.arange(N) / N], 1).astype(np.float32)
  images[[0, 1], 0] = 0.75  # class 3: misclassified without an attack
  first, second, calls = {2, 5, 7}, {5, 7, 11, 12}, ([], [])
  result = run_sequence(_classify, images, labels, jax.random.key(0),
                        [('a', _stand_in(first, 1.0, calls[0])),
                         ('b', _stand_in(second, 0.9, calls[1]))], batch_size=8)
  seen_by = [set().union(*c) for c in calls]
  assert seen_by[0] == set(range(N)) - {0, 1}
  assert seen_by[1] == set(range(N)) - {0, 1} - first  # broken by 'a': not touched by 'b'
  expected = np.full(N, -1)
  expected[[0, 1]], expected[sorted(first)], expected[[11, 12]] = 0, 1, 2
  np.testing.assert_array_equal(result.broken_by, expected)
  np.testing.assert_array_equal(result.adversarial[sorted(first), 0], 1.0)  # 'a's images kept
  np.testing.assert_array_equal(result.adversarial[[11, 12], 0], np.float32(0.9))
  untouched = expected <= 0
  np.testing.assert_array_equal(result.adversarial[untouched], images[untouched])
  assert list(result.seconds) == ['a', 'b']
  assert accuracy_after_each(result.broken_by, ('clean', 'a', 'b')) == {
      'clean': 18 / N, 'a': 15 / N, 'b': 13 / N}


def test_sequence_runs_each_stage_of_an_attack_on_the_examples_the_earlier_stages_left():
  labels = np.array([i % 3 for i in range(N)], np.int32)
  images = np.stack([labels / 4, np.arange(N) / N], 1).astype(np.float32)
  images[0, 0] = 0.75  # misclassified without an attack
  calls, keys = ([], [], []), []

  def keyed(attack):
    def run(images, labels, key):
      keys.append(jax.random.key_data(key))
      return attack(images, labels, key)
    return run

  stages = [keyed(_stand_in({2, 5}, 1.0, calls[0])), keyed(_stand_in({5, 7, 9}, 0.9, calls[1]))]
  result = run_sequence(_classify, images, labels, jax.random.key(0),
                        [('a', stages), ('b', _stand_in({3}, 1.0, calls[2]))], batch_size=32)
  seen_by = [set().union(*c) for c in calls]
  assert seen_by[0] == set(range(1, N))
  assert seen_by[1] == set(range(1, N)) - {2, 5}  # 5 already broken by stage 0
  assert seen_by[2] == set(range(1, N)) - {2, 5, 7, 9}
  expected = np.full(N, -1)
  expected[0], expected[[2, 5, 7, 9]], expected[3] = 0, 1, 2
  np.testing.assert_array_equal(result.broken_by, expected)
  np.testing.assert_array_equal(result.adversarial[[2, 5], 0], 1.0)  # stage 0's image kept
  np.testing.assert_array_equal(result.adversarial[[7, 9], 0], np.float32(0.9))
  np.testing.assert_array_equal(keys[0], keys[1])  # a stage derives its draws from its index
  assert list(result.seconds) == list(result.compile_seconds) == ['a', 'b']


def _padding_trap(breaks, value, calls, padding):
  """`_stand_in` for sharded, padded chunks: it also records each chunk's size and devices, and
  moves every padding row (a repeat of an example this attack has already seen: the chunk is
  padded with copies of the first example attacked) to class 3, wrong for every label here, so a
  padding row that counted would break that example with class 3."""
  def attack(images, labels, key):
    del labels, key
    calls.append((images.shape[0], len(images.sharding.device_set)))
    seen, moved = set(padding['seen']), np.asarray(images).copy()
    for position, row in enumerate(ROW_OF(images).tolist()):
      if row in seen:
        moved[position, 0] = 0.75
        padding['rows'] += 1
      elif row in breaks:
        moved[position, 0] = value
      seen.add(row)
    padding['seen'] = seen
    return jnp.asarray(moved)
  return attack


def test_sequence_on_eight_devices_keeps_first_breaks_and_never_counts_padding(eight_devices):
  # 21 examples, chunks of 16 over 8 devices. Clean: 1 and 4 misclassified. 'a' attacks 19:
  # chunks of 16 and 3 + 5 padding rows; it breaks 5, 7, 12, 13. 'b' attacks the other 15: one
  # chunk, 15 + 1 padding row; it would break 7 again (with another image) and breaks 11, 20.
  sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(eight_devices), ('data',)),
                                        jax.sharding.PartitionSpec('data'))
  n = 21
  labels = np.asarray([i % 3 for i in range(n)], np.int32)
  images = np.stack([labels / 4, np.arange(n) / N], 1).astype(np.float32)
  images[[1, 4], 0] = 0.75
  calls, padding = ([], []), ({'seen': set(), 'rows': 0}, {'seen': set(), 'rows': 0})
  attack_a = _padding_trap({5, 7, 12, 13}, 1.0, calls[0], padding[0])
  attack_b = _padding_trap({7, 11, 20}, 0.9, calls[1], padding[1])
  result = run_sequence(_classify, images, labels, jax.random.key(0),
                        [('a', attack_a), ('b', attack_b)], batch_size=16, sharding=sharding)
  expected = np.full(n, -1)
  expected[[1, 4]], expected[[5, 7, 12, 13]], expected[[11, 20]] = 0, 1, 2
  np.testing.assert_array_equal(result.broken_by, expected)  # example 0, padded twice, robust
  np.testing.assert_array_equal(result.adversarial[[5, 7, 12, 13], 0], 1.0)  # 'a's, kept
  np.testing.assert_array_equal(result.adversarial[[11, 20], 0], np.float32(0.9))
  untouched = expected <= 0
  np.testing.assert_array_equal(result.adversarial[untouched], images[untouched])
  assert padding[0]['seen'] == set(range(n)) - {1, 4}
  assert padding[1]['seen'] == set(range(n)) - {1, 4, 5, 7, 12, 13}
  assert calls == ([(16, 8), (8, 8)], [(16, 8)])  # padded, split over the 8 devices
  assert (padding[0]['rows'], padding[1]['rows']) == (5, 1)  # the trap was set


def test_chunks_are_padded_by_less_than_an_eighth_to_few_sizes():
  assert _chunk_sizes(1000, 500, 1) == [(500, 500), (500, 500)]
  assert _chunk_sizes(24, 500, 1) == [(24, 24)]  # was padded to 64: 2.7× the work
  assert _chunk_sizes(37, 500, 1) == [(37, 40)]
  assert _chunk_sizes(700, 500, 8) == [(504, 504), (196, 208)]  # multiples of the devices
  assert _chunk_sizes(499, 500, 8) == [(499, 504)]
  for multiple in (1, 8):
    padded_sizes = set()
    for count in range(1, 501):
      (examples, padded), = _chunk_sizes(count, 512, multiple)
      per_device = -(-count // multiple)
      assert examples == count and padded % multiple == 0
      assert per_device * multiple <= padded <= per_device * multiple * 9 / 8
      padded_sizes.add(padded)
    assert len(padded_sizes) <= 16 + 8 * 5  # 1..16, then 8 per octave


def test_accuracy_after_each_attack_on_hand_bookkeeping():
  broken_by = np.array([0, -1, 1, 2, 2, -1])
  assert accuracy_after_each(broken_by, ('clean', 'x', 'y')) == {'clean': 5 / 6, 'x': 4 / 6,
                                                                 'y': 2 / 6}
  assert attacks.autoattack_names() == ('clean', 'apgd-ce', 'apgd-t', 'fab-t', 'square')
  assert attacks.autoattack_names('rand') == ('clean', 'apgd-ce', 'apgd-dlr')


def test_autoattack_standard_end_to_end_on_a_linear_model(linear_problem):
  logits_fn, images, labels = linear_problem
  labels = labels.at[:3].set((labels[:3] + 1) % NUM_CLASSES)  # 3 misclassified without attack
  result = attacks.autoattack_sequence(lambda x: logits_fn(x), images, labels, jax.random.key(0),
                                       epsilon=0.05, settings=TINY, batch_size=8)
  adversarial, broken_by = result.adversarial, result.broken_by
  # A new function: APGD-CE compiles (JAX's monitoring events), within its wall time.
  assert result.compile_seconds['apgd-ce'] > 0
  assert all(0 <= result.compile_seconds[n] <= result.seconds[n] for n in result.seconds)
  np.testing.assert_array_equal(broken_by[:3], 0)
  assert set(broken_by.tolist()) <= {-1, 0, 1, 2, 3, 4} and (broken_by > 0).any()
  predicted = np.asarray(jnp.argmax(logits_fn(jnp.asarray(adversarial)), -1))
  np.testing.assert_array_equal(predicted != np.asarray(labels), broken_by != -1)
  assert float(attacks.distance(jnp.asarray(adversarial), images, 'linf').max()) <= 0.05 * (
      1 + 1e-5)
  np.testing.assert_array_equal(adversarial[broken_by <= 0], np.asarray(images)[broken_by <= 0])


def test_autoattack_rand_warns_on_a_deterministic_model(linear_problem):
  logits_fn, images, labels = linear_problem
  with pytest.warns(UserWarning, match=r"^version='rand': logits_fn\(images, key\) gave the same "
                                       r"logits for two keys"):
    _, broken_by = attacks.autoattack(lambda x, key: logits_fn(x), images, labels,
                                      jax.random.key(0), epsilon=0.05, version='rand',
                                      settings=TINY)
  assert broken_by.shape == (16,)


@pytest.mark.parametrize('kwargs,error', [
    (dict(version='fast'), r"^version='fast': must be one of 'standard', 'plus', 'rand'$"),
    (dict(norm='Linf'), r"^norm='Linf': must be one of 'linf', 'l2'$"),
    (dict(epsilon=-0.1), r'^epsilon=-0.1: must be a finite number >= 0$'),
])
def test_autoattack_bad_arguments_are_one_line(linear_problem, kwargs, error):
  logits_fn, images, labels = linear_problem
  with pytest.raises(ValueError, match=error):
    attacks.autoattack(logits_fn, images, labels, jax.random.key(0),
                       **{'epsilon': 0.1, **kwargs})
  with pytest.raises(ValueError, match=r'^apgd_steps=0: must be an int >= 1$'):
    attacks.AutoAttackSettings(apgd_steps=0)


# ----------------------------------------------------------------------------- masking flags
def _results(row_01, large=0.0, sequence=('APGD-CE', 'APGD-T', 'FAB-T', 'Square')):
  accuracy = {'0.1': row_01}
  return {'accuracy': accuracy, 'num_examples': 1000, 'large_epsilon': '0.5',
          'large_epsilon_accuracy': large, 'num_classes': 10,
          'autoattack': {'version': 'standard', 'sequence': list(sequence)}}


def _settings():
  settings = config_defaults.default_config().robustness
  settings.attacks = ('fgsm', 'pgd')
  return settings


def test_gradient_masking_flags_on_hand_numbers():
  healthy = {'clean': .9, 'FGSM': .5, 'PGD-20': .4, 'APGD-CE': .38, 'APGD-T': .36, 'FAB-T': .36,
             'Square': .355, robustness.WORST_CASE: .355}
  assert robustness.gradient_masking_flags(_results(healthy), _settings()) == {
      'square_breaks_gradient_robust': False, 'fgsm_stronger_than_pgd': False,
      'large_epsilon_not_near_zero': False}
  masked = dict(healthy, FGSM=.3, **{'PGD-20': .6, 'Square': .33})  # Square breaks 3 %
  results = _results(masked, large=0.4)
  assert robustness.gradient_masking_flags(results, _settings()) == {
      'square_breaks_gradient_robust': True, 'fgsm_stronger_than_pgd': True,
      'large_epsilon_not_near_zero': True}
  checks, warnings = robustness.sanity_checks(results, _settings())
  assert 'Square breaks ≤ 1 % after the gradient attacks' in checks
  assert ('ε=0.1: Square broke 3.00 % of the examples, all left robust by every gradient attack '
          'before it (> 1 %): gradient masking') in warnings
  # Just over and just under 1 %: the tolerance is strict.
  edge = lambda square: robustness.gradient_masking_flags(
      _results(dict(healthy, Square=square)), _settings())['square_breaks_gradient_robust']
  assert edge(.36 - .0101) and not edge(.36 - .0099)
  no_square = _results(healthy, sequence=('APGD-CE', 'APGD-DLR'))
  assert 'square_breaks_gradient_robust' not in robustness.gradient_masking_flags(
      no_square, _settings())
  assert 'Gradient-masking flags: square_breaks_gradient_robust: RAISED; ' in (
      robustness.gradient_masking_report({'gradient_masking': {
          'square_breaks_gradient_robust': True, 'fgsm_stronger_than_pgd': False}}))
