"""FAB against the closed-form distance to a linear classifier's boundary, and its invariants."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax.attacks import threat_model
from robust_jax.attacks.autoattack import AutoAttackSettings, _attack
from robust_jax.attacks.fab import fab, project_onto_hyperplane

BATCH, DIM, NUM_CLASSES = 12, 8, 4
DUAL = {'linf': 1, 'l2': 2}  # the dual norm's order
_rng = np.random.default_rng(0)
WEIGHTS = jnp.asarray(_rng.normal(size=(DIM, NUM_CLASSES)), jnp.float32)
BIAS = jnp.asarray(0.1 * _rng.normal(size=NUM_CLASSES), jnp.float32)
# Clean points well inside [0, 1]: the nearest boundary point is inside the box too.
IMAGES = jnp.asarray(_rng.uniform(0.35, 0.65, size=(BATCH, DIM)), jnp.float32)


def linear_logits(x):
  return x @ WEIGHTS + BIAS


LABELS = jnp.argmax(linear_logits(IMAGES), -1)


def boundary_distances(norm):
  """(B, C): |(w_y - w_j)·x + b_y - b_j| / ‖w_y - w_j‖_* per class j (inf at j = y), in float64."""
  weights, logits, labels = (np.asarray(a, np.float64) for a in (WEIGHTS, linear_logits(IMAGES),
                                                                   LABELS))
  labels = labels.astype(int)
  distances = np.full((BATCH, NUM_CLASSES), np.inf)
  for i, y in enumerate(labels):
    for j in range(NUM_CLASSES):
      if j != y:
        distances[i, j] = abs(logits[i, y] - logits[i, j]) / np.linalg.norm(
            weights[:, y] - weights[:, j], DUAL[norm])
  return distances


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_minimal_distance_on_a_linear_model_matches_the_closed_form(norm):
  adversarial, norms = fab(linear_logits, IMAGES, LABELS, norm=norm)
  expected = boundary_distances(norm).min(-1)
  np.testing.assert_allclose(norms, expected, rtol=0.01)
  assert np.all(np.asarray(norms) >= expected * (1 - 1e-4))  # never inside the boundary
  assert bool(jnp.all(jnp.argmax(linear_logits(adversarial), -1) != LABELS))
  np.testing.assert_allclose(threat_model.distance(adversarial, IMAGES, norm), norms, rtol=1e-5)


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_fab_t_over_every_target_finds_the_nearest_boundary(norm):
  _, norms = fab(linear_logits, IMAGES, LABELS, norm=norm, targeted=True, num_target_classes=9)
  np.testing.assert_allclose(norms, boundary_distances(norm).min(-1), rtol=0.01)


def test_fab_t_at_one_rank_stops_at_that_class_boundary_or_at_a_nearer_one():
  _, norms = fab(linear_logits, IMAGES, LABELS, targeted=True, target_class_rank=3)
  distances = boundary_distances('linf')
  third = np.argsort(-np.asarray(linear_logits(IMAGES)), -1)[:, 2]
  to_third = distances[np.arange(BATCH), third]
  assert np.all(np.asarray(norms) <= to_third * 1.01)
  assert np.all(np.asarray(norms) >= distances.min(-1) * (1 - 1e-4))
  assert np.any(np.asarray(norms) > distances.min(-1) * 1.05)  # not the untargeted attack


def kkt_projection(point, normal, residual, norm):
  """The same projection from its optimality conditions, by bisection in float64.

  The step is d(λ) = clip(-λ s(w), -x, 1 - x) with s(w) = sign(w) (L∞) or w (L2), λ >= 0 the
  smallest value with ⟨w, d(λ)⟩ = -r (w's sign flipped where r < 0); all coordinates at their
  bounds where no λ reaches the hyperplane.
  """
  w = np.asarray(normal, np.float64) * (1 if residual >= 0 else -1)
  x = np.asarray(point, np.float64)
  step = lambda level: np.clip(-level * (np.sign(w) if norm == 'linf' else w), -x, 1 - x)
  if -(w @ step(1e9)) < abs(residual):
    return step(1e9)
  low, high = 0.0, 1e9
  for _ in range(200):
    middle = (low + high) / 2
    low, high = (middle, high) if -(w @ step(middle)) < abs(residual) else (low, middle)
  return step(high)


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_projection_onto_the_hyperplane_in_the_box_matches_its_kkt_solution(norm):
  rng = np.random.default_rng(1)
  points = rng.uniform(0, 1, (64, 20)).astype(np.float32)
  normals = rng.normal(size=(64, 20)).astype(np.float32)
  normals[:, :3] = 0.0  # coordinates the hyperplane ignores do not move
  # Residuals of both signs, from tiny (the box plays no part) to past what the box allows.
  residuals = (rng.normal(size=64) * rng.uniform(0.05, 5.0, 64)).astype(np.float32)
  steps = np.asarray(project_onto_hyperplane(jnp.asarray(points), jnp.asarray(normals),
                                             jnp.asarray(residuals), norm))
  expected = np.stack([kkt_projection(p, w, r, norm)
                       for p, w, r in zip(points, normals, residuals)])
  np.testing.assert_allclose(steps, expected, atol=1e-5)
  reachable = np.abs(np.sum(normals * expected, -1) + residuals) < 1e-4
  assert 10 < reachable.sum() < 64  # both cases occur
  assert np.all(steps[:, :3] == 0.0)


def test_with_epsilon_only_perturbations_within_it_are_returned():
  expected = boundary_distances('linf').min(-1)
  epsilon = float(np.median(expected))
  adversarial, norms = fab(linear_logits, IMAGES, LABELS, epsilon=epsilon)
  within = np.asarray(norms) <= epsilon
  assert 0 < within.sum() < BATCH
  broken = np.asarray(jnp.argmax(linear_logits(adversarial), -1) != LABELS)
  np.testing.assert_array_equal(broken, within)
  np.testing.assert_array_equal(np.asarray(adversarial)[~within], np.asarray(IMAGES)[~within])
  assert float(threat_model.distance(adversarial, IMAGES, 'linf').max()) <= epsilon
  np.testing.assert_allclose(np.asarray(norms)[~within], expected[~within], rtol=0.01)


def test_an_example_misclassified_at_the_start_comes_back_unchanged_with_norm_zero():
  labels = LABELS.at[0].set((LABELS[0] + 1) % NUM_CLASSES)
  adversarial, norms = fab(linear_logits, IMAGES, labels, num_steps=10)
  np.testing.assert_array_equal(adversarial[0], IMAGES[0])
  assert float(norms[0]) == 0.0
  assert bool(jnp.all(norms[1:] > 0)) and bool(jnp.all(jnp.isfinite(norms[1:])))


@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_random_restarts_are_never_worse_than_the_run_from_the_clean_point(norm):
  # The model is nonlinear, so runs from other starts can end at other boundary points.
  hidden = jnp.asarray(np.random.default_rng(2).normal(size=(DIM, 16)), jnp.float32)
  logits_fn = lambda x: jnp.tanh(4 * (x - 0.5) @ hidden) @ hidden.T @ WEIGHTS
  labels = jnp.argmax(logits_fn(IMAGES), -1)
  _, single = fab(logits_fn, IMAGES, labels, norm=norm, num_steps=20)
  _, several = fab(logits_fn, IMAGES, labels, jax.random.key(0), norm=norm, num_steps=20,
                   restarts=3)
  assert np.all(np.asarray(several) <= np.asarray(single))
  assert np.any(np.asarray(several) < np.asarray(single) * 0.999)


def test_each_example_is_attacked_as_if_it_were_alone():
  _, together = fab(linear_logits, IMAGES, LABELS, num_steps=20, epsilon=0.05)
  _, alone = fab(linear_logits, IMAGES[:3], LABELS[:3], num_steps=20, epsilon=0.05)
  np.testing.assert_allclose(together[:3], alone, rtol=1e-5)


def test_no_gradient_flows_through_the_attack():
  def total(x, epsilon):
    adversarial, norms = fab(linear_logits, x, LABELS, num_steps=10, epsilon=epsilon)
    return adversarial.sum() + norms.sum()
  gradient = jax.grad(total)(IMAGES, 0.2)
  np.testing.assert_array_equal(gradient, np.zeros_like(gradient))


def test_under_jit_with_epsilon_traced_it_gives_the_eager_result():
  eager = fab(linear_logits, IMAGES, LABELS, num_steps=10, epsilon=0.2)
  jitted = jax.jit(lambda x, eps: fab(linear_logits, x, LABELS, num_steps=10, epsilon=eps))(
      IMAGES, 0.2)
  for a, b in zip(eager, jitted):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def call(**overrides):
  kwargs = dict(logits_fn=linear_logits, images=IMAGES, labels=LABELS, num_steps=2) | overrides
  return lambda: fab(**kwargs)


# (id, call, exception type, regex its one-line message must match)
BAD_CALLS = [
    (call(epsilon=-0.1), ValueError, r'^epsilon=-0\.1: must be a finite number >= 0$'),
    (call(norm='l1'), ValueError, r"^norm='l1': must be one of 'linf', 'l2'$"),
    (call(num_steps=0), ValueError, r'^num_steps=0: must be an int >= 1$'),
    (call(restarts=2), ValueError, r'^key=None: this call draws random starts and needs a PRNG '),
    (call(alpha_max=1.5), ValueError, r'^alpha_max=1\.5: must be a finite number in \[0, 1\]$'),
    (call(eta=0.0), ValueError, r'^eta=0\.0: must be a finite number > 0$'),
    (call(beta=1.5), ValueError, r'^beta=1\.5: must be a finite number in \[0, 1\]$'),
    (call(targeted=True, target_class_rank=1), ValueError,
     r'^target_class_rank=1: must be an int in \[2, 4\] \(rank 1 is the predicted class; '
     r'logits_fn gives C = 4\)$'),
    (call(targeted=True, target_class_rank=5), ValueError, r'^target_class_rank=5: must be an '),
    (call(targeted=True, target_class_rank=2.0), TypeError, r'^target_class_rank=2\.0: must be '),
    (call(target_class_rank=2), ValueError,
     r'^target_class_rank=2: needs targeted=True \(FAB-T\)$'),
    (call(num_target_classes=0), ValueError, r'^num_target_classes=0: must be an int >= 1$'),
    (call(labels=LABELS.at[0].set(NUM_CLASSES)), ValueError, r'^labels: values range over '),
    (call(images=IMAGES[:0], labels=LABELS[:0]), ValueError,  # was a ZeroDivisionError
     r'^images\.shape=\(0, .*\): no examples to attack \(B = 0\); skip the call when nothing '),
]


@pytest.mark.parametrize('make_call,error,message', BAD_CALLS,
                         ids=[re.sub(r'[\\^]', '', m.split(':')[0]) for _, _, m in BAD_CALLS])
def test_a_bad_argument_gives_one_line_naming_it(make_call, error, message):
  with pytest.raises(error) as raised:
    make_call()
  assert re.search(message, str(raised.value)), str(raised.value)
  assert '\n' not in str(raised.value)


# ----------------------------------------------------------------------------- choices (#28)
# FAB-T attacks the classes ranked 2, ..., k + 1 by the clean logits (at most C - 1 of them; the
# reference's fab_base.py: `output.sort(dim=-1)[1][:, -target_class]`, target_class = 2..k + 1).
# Hand-made model, per example: z_y = 1 whatever x (s_y = 0) and z_j = s_j x_j + b_j, so the
# boundary with class j moves x_j alone and lies at L∞ distance D_j = (1 - z_j) / s_j from
# x = 0.5. The class of rank r has z = 1.1 - 0.1 r and the distance DISTANCES[i][r - 2]: the
# coordinate FAB-T moves and the norm it finds tell which target won.
RANKED_CLASSES = np.asarray([[1, 2, 3, 4, 5], [5, 3, 0, 4, 1], [0, 4, 1, 3, 2]])  # ranks 2..6
RANKED_LABELS = np.asarray([0, 2, 5])
DISTANCES = np.asarray([[.40, .30, .20, .10, .05],  # the lower the rank, the nearer
                        [.05, .10, .20, .30, .40],  # rank 2 nearest
                        [.30, .20, .05, .10, .40]])  # rank 4 nearest


def ranked_problem():
  """(logits_fn, images (3, 6) = 0.5, labels) of the model above."""
  clean = np.zeros((3, 6), np.float32)
  scale = np.zeros((3, 6), np.float32)
  clean[np.arange(3), RANKED_LABELS] = 1.0
  for i in range(3):
    clean[i, RANKED_CLASSES[i]] = 1.1 - 0.1 * np.arange(2, 7)
    scale[i, RANKED_CLASSES[i]] = (1.0 - clean[i, RANKED_CLASSES[i]]) / DISTANCES[i]
  bias = jnp.asarray(clean - 0.5 * scale)
  scale = jnp.asarray(scale)
  images = jnp.full((3, 6), 0.5, jnp.float32)
  np.testing.assert_array_equal(np.argsort(-np.asarray(images * scale + bias), -1)[:, 1:],
                                RANKED_CLASSES)
  return lambda x: x * scale + bias, images, jnp.asarray(RANKED_LABELS)


def moved_class_and_norm(adversarial, norms):
  """Per example, the one coordinate FAB moved (the target it kept) and the norm found."""
  moved = np.asarray(adversarial) != 0.5
  assert np.all(moved.sum(-1) == 1), moved
  return np.argmax(moved, -1), np.asarray(norms)


@pytest.mark.parametrize('num_target_classes,last_rank', [(1, 2), (2, 3), (9, 6)])
def test_fab_t_attacks_exactly_the_ranks_2_to_k_plus_1_capped_at_c_minus_1(num_target_classes,
                                                                            last_rank):
  # Without epsilon each example keeps its smallest norm over the targets attacked: the nearest
  # boundary among ranks 2..last_rank (9 targets on 6 classes: ranks 2..6, all C - 1 of them).
  logits_fn, images, labels = ranked_problem()
  moved, norms = moved_class_and_norm(*fab(logits_fn, images, labels, num_steps=10, targeted=True,
                                           num_target_classes=num_target_classes))
  attacked = DISTANCES[:, :last_rank - 1]
  winner = np.argmin(attacked, -1)  # index r - 2 of the winning rank r
  np.testing.assert_array_equal(moved, RANKED_CLASSES[np.arange(3), winner])
  np.testing.assert_allclose(norms, attacked.min(-1), rtol=0.02)


def test_fab_t_with_epsilon_keeps_the_first_target_in_rank_order_within_epsilon():
  # ε = 0.35: example 0's rank-2 boundary (0.4) is out of reach, so rank 3 (0.3) is kept although
  # ranks 4..6 are nearer; examples 1 and 2 keep rank 2 (0.05; 0.3, though rank 4 is at 0.05).
  # An example within ε takes part in no later run (target × restart), as in the reference.
  logits_fn, images, labels = ranked_problem()
  moved, norms = moved_class_and_norm(*fab(logits_fn, images, labels, num_steps=10, epsilon=0.35,
                                           targeted=True))
  kept = np.asarray([1, 0, 0])  # index r - 2 of the rank kept
  np.testing.assert_array_equal(moved, RANKED_CLASSES[np.arange(3), kept])
  np.testing.assert_allclose(norms, DISTANCES[np.arange(3), kept], rtol=0.02)


@pytest.mark.parametrize('rank', [3, 5])
def test_fab_t_at_one_traced_rank_attacks_that_class(rank):
  # AutoAttack's stages pass the rank traced: one compilation for every target.
  logits_fn, images, labels = ranked_problem()
  attack = jax.jit(lambda r: fab(logits_fn, images, labels, num_steps=10, targeted=True,
                                 target_class_rank=r))
  moved, norms = moved_class_and_norm(*attack(jnp.int32(rank)))
  np.testing.assert_array_equal(moved, RANKED_CLASSES[:, rank - 2])
  np.testing.assert_allclose(norms, DISTANCES[:, rank - 2], rtol=0.02)


def test_fab_t_at_one_rank_repeats_that_ranks_runs_of_the_whole_sweep():
  # With restarts, rank 3 alone starts its second run where the sweep over ranks 2 and 3 starts
  # its fourth (the random start of run (r - 2) × restarts + restart), evaluating the same points.
  def recorder(points):
    def logits_fn(x):
      jax.debug.callback(lambda value: points.append(np.asarray(value)), x, ordered=True)
      return linear_logits(x)
    return logits_fn

  steps, whole, alone = 2, [], []
  key = jax.random.key(3)
  fab(recorder(whole), IMAGES, LABELS, key, num_steps=steps, restarts=2, targeted=True,
      num_target_classes=2)
  fab(recorder(alone), IMAGES, LABELS, key, num_steps=steps, restarts=2, targeted=True,
      target_class_rank=3)
  per_run = 2 * steps  # the boundary's linearisation and the new point's class, per step
  assert len(whole) == 1 + 4 * per_run and len(alone) == 1 + 2 * per_run
  np.testing.assert_array_equal(np.stack(alone[1:]), np.stack(whole[-2 * per_run:]))
  assert not np.array_equal(alone[1 + per_run], whole[1 + per_run])  # run 1 of rank 2 differs


@pytest.mark.parametrize('stage', [0, 1, 4])
def test_autoattack_stage_s_of_fab_t_attacks_the_class_ranked_s_plus_2(stage):
  logits_fn, images, labels = ranked_problem()
  found = _attack(jax.tree_util.Partial(logits_fn), images, labels, jax.random.key(0),
                  jnp.float32(0.5), jnp.int32(stage), name='fab-t', version='standard',
                  norm='linf', settings=AutoAttackSettings(fab_steps=10))
  moved, _ = moved_class_and_norm(found, np.zeros(3))
  np.testing.assert_array_equal(moved, RANKED_CLASSES[:, stage])
