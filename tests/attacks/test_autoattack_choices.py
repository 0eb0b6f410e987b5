"""AutoAttack's choices where every formula stays right: how many stages each attack of each
version runs, which key each stage and each classification draws, how many classes a version
needs, the 'rand' version's warning, and the sequence's padding of a single survivor.

Most tests read the stages `autoattack_sequence` builds by replacing the `run_sequence` it calls
(nothing is attacked); the stage-key tests run the stages against the public attacks.
"""
import dataclasses
import importlib
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks
from robust_jax.attacks import sequence, threat_model
from tests import helpers

autoattack_module = importlib.import_module('robust_jax.attacks.autoattack')
QUICK = attacks.AutoAttackSettings(apgd_steps=2, fab_steps=2, square_queries=2, eot_samples=2)


def _problem(num_classes, stochastic=False):
  """(logits_fn, images (16, 2, 2, 3), labels): `helpers.linear_problem`, its own predictions as
  labels; `stochastic`: logits_fn(x, key) with noise drawn from the key."""
  logits_fn, _, images, _ = helpers.linear_problem(num_classes)
  labels = jnp.argmax(logits_fn(images), -1)
  if stochastic:
    return (lambda x, key: logits_fn(x) + jax.random.normal(key, (num_classes,)), images, labels)
  return logits_fn, images, labels


@pytest.fixture
def built(monkeypatch):
  """build(version, C, settings=...) -> [(name, stages)]: what autoattack_sequence would run."""
  captured = []

  def run_sequence(classify, images, labels, key, attack_list, **kwargs):
    del classify, key, kwargs
    captured.append(attack_list)
    return sequence.SequenceResult(np.asarray(images), np.full(len(labels), -1), {}, {})

  monkeypatch.setattr(autoattack_module, 'run_sequence', run_sequence)

  def build(version, num_classes, settings=attacks.AutoAttackSettings()):
    logits_fn, images, labels = _problem(num_classes, stochastic=version == 'rand')
    attacks.autoattack_sequence(logits_fn, images, labels, jax.random.key(0), 0.05,
                                version=version, settings=settings)
    return captured.pop()
  return build


@pytest.mark.parametrize('version,num_classes,settings,expected', [
    ('standard', 10, attacks.AutoAttackSettings(),
     dict(zip(('apgd-ce', 'apgd-t', 'fab-t', 'square'), (1, 9, 9, 1)))),
    ('standard', 5, attacks.AutoAttackSettings(),  # at most the C - 1 wrong classes
     dict(zip(('apgd-ce', 'apgd-t', 'fab-t', 'square'), (1, 4, 4, 1)))),
    ('standard', 10, attacks.AutoAttackSettings(apgd_restarts=3, num_target_classes=2),
     dict(zip(('apgd-ce', 'apgd-t', 'fab-t', 'square'), (3, 2, 2, 1)))),
    ('plus', 10, attacks.AutoAttackSettings(),  # FAB's 5 restarts run inside one stage
     dict(zip(('apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t'), (5, 5, 1, 1, 9, 9)))),
    ('rand', 10, attacks.AutoAttackSettings(), {'apgd-ce': 1, 'apgd-dlr': 1}),
])
def test_each_version_runs_the_references_stages(built, version, num_classes, settings,
                                                 expected):
  """The reference's budgets: 'standard' 1 run of APGD-CE and 9 target classes of APGD-T and
  FAB-T; 'plus' 5 restarts of APGD-CE, APGD-DLR and FAB; 'rand' 1 run each (with EOT)."""
  attack_list = built(version, num_classes, settings)
  assert {name: len(stages) for name, stages in attack_list} == expected
  assert list(expected) == [name for name, _ in attack_list]  # in the version's order
  for _, stages in attack_list:
    assert [int(stage.keywords['stage']) for stage in stages] == list(range(len(stages)))


@pytest.mark.parametrize('version,enough', [('standard', 4), ('rand', 3)])
def test_a_version_needs_the_classes_its_dlr_losses_read(built, version, enough):
  """Targeted DLR reads z_π4 ('standard', 'plus'); untargeted DLR z_π3 ('rand')."""
  built(version, enough)
  with pytest.raises(ValueError, match=rf'^version={version!r}: needs at least {enough} classes '
                                       rf'.* logits_fn gives C = {enough - 1}$'):
    built(version, enough - 1)


def test_rand_warns_only_for_a_deterministic_model_and_names_the_caller(built):
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    built('rand', 10)  # a model that draws noise from its key: no warning
  logits_fn, images, labels = _problem(10)
  for function in (attacks.autoattack, attacks.autoattack_sequence):
    with pytest.warns(UserWarning, match=r"^version='rand': .* same logits") as record:
      function(lambda x, key: logits_fn(x), images, labels, jax.random.key(0), 0.05,
               version='rand', settings=QUICK)
    assert record[0].filename == __file__, function.__name__  # the caller's line, not ours


def _l2_problem():
  logits_fn, images, labels = _problem(10)
  return jax.tree_util.Partial(logits_fn), images[:4], labels[:4]


def test_a_single_apgd_run_keeps_apgds_keys_and_restarts_fold_in_their_index(built):
  """Stage s of APGD-CE with restarts draws from fold_in(key, s); a single run ('standard') from
  the key itself, so it repeats `apgd(..., key)` (L2: where the start lies matters)."""
  logits_fn, images, labels = _l2_problem()
  key, epsilon = jax.random.key(7), 0.5
  run = jax.jit(lambda k: threat_model.project(
      attacks.apgd(logits_fn, images, labels, k, epsilon=epsilon, norm='l2', num_steps=2),
      images, epsilon, 'l2'))  # one compilation for the three keys
  on_l2 = dict(epsilon=jnp.float32(epsilon), norm='l2')  # the stages were built for L∞
  single, = dict(built('standard', 10, QUICK))['apgd-ce']
  np.testing.assert_allclose(single(images, labels, key, **on_l2), run(key), atol=1e-6)
  assert not np.allclose(run(key), run(jax.random.fold_in(key, 0)), atol=1e-3)  # keys matter
  restarts = dataclasses.replace(QUICK, apgd_restarts=2)
  _, second = dict(built('standard', 10, restarts))['apgd-ce']
  np.testing.assert_allclose(second(images, labels, key, **on_l2),
                             run(jax.random.fold_in(key, 1)), atol=1e-6)


def test_plus_runs_untargeted_fab_with_five_restarts_and_keeps_its_images(built):
  logits_fn, images, labels = _l2_problem()
  key, epsilon = jax.random.key(8), 0.5
  stage, = dict(built('plus', 10, QUICK))['fab']
  expected = attacks.fab(logits_fn, images, labels, key, epsilon=epsilon, norm='l2', restarts=5,
                         num_steps=2)[0]
  np.testing.assert_allclose(stage(images, labels, key, epsilon=jnp.float32(epsilon), norm='l2'),
                             threat_model.project(expected, images, epsilon, 'l2'), atol=1e-6)


# ----------------------------------------------------------------------------- the sequence
def test_sequence_keys_are_the_documented_ones_and_never_repeat():
  """Clean pass: chunk c classified with fold_in(fold_in(key, 0), c). Attack k, stage s, chunk c:
  (attack key, classify key) = split(fold_in(fold_in(key, k), c)), the classify key folded with s
  for s >= 1. 3 examples in chunks of 2 and 1, one attack of 3 stages that breaks nothing."""
  attack_keys, classify_keys = [], []
  data = lambda key: tuple(np.asarray(jax.random.key_data(key)).ravel())

  def classify(images, key):
    classify_keys.append(data(key))
    return jnp.zeros(images.shape[0], jnp.int32)

  def stage(images, labels, key):
    del labels
    attack_keys.append(data(key))
    return images

  key, images = jax.random.key(4), np.zeros((3, 2), np.float32)
  started = time.perf_counter()
  result = sequence.run_sequence(classify, images, np.zeros(3, np.int32), key,
                                 [('a', [stage, stage, stage])], batch_size=2)
  elapsed = time.perf_counter() - started
  base = lambda k, c: jax.random.split(jax.random.fold_in(jax.random.fold_in(key, k), c))
  expected_classify = [data(jax.random.fold_in(jax.random.fold_in(key, 0), c)) for c in (0, 1)]
  for s in range(3):
    for c in (0, 1):
      attack_key, classify_key = base(1, c)
      assert attack_keys[2 * s + c] == data(attack_key)
      expected_classify.append(data(jax.random.fold_in(classify_key, s) if s else classify_key))
  assert classify_keys == expected_classify
  assert len(set(classify_keys)) == len(classify_keys)
  assert 0 <= result.compile_seconds['a'] <= result.seconds['a'] <= elapsed
  with pytest.raises(dataclasses.FrozenInstanceError):
    result.broken_by = None


def test_sequence_pads_a_single_survivor_over_eight_devices(eight_devices):
  """One example left robust, 8 devices: the chunk is 8 copies of it, counted once."""
  mesh = jax.sharding.Mesh(np.asarray(eight_devices), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  images = np.asarray([[0.0], [1.0], [2.0]], np.float32)  # class = the feature
  labels = np.asarray([0, 0, 0], np.int32)  # 1 and 2 are misclassified without an attack
  seen = []

  def attack(x, y, key):
    del y, key
    seen.append(np.asarray(x)[:, 0].tolist())
    return x + 1.0

  classify = lambda x, key: jnp.asarray(x)[:, 0].astype(jnp.int32)
  result = sequence.run_sequence(classify, images, labels, jax.random.key(0), [('a', attack)],
                                 sharding=sharding)
  assert seen == [[0.0] * 8]
  np.testing.assert_array_equal(result.broken_by, [1, 0, 0])
  np.testing.assert_array_equal(result.adversarial[:, 0], [1.0, 1.0, 2.0])
