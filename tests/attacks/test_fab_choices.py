"""FAB's choices where every formula stays right (#28): the projection's edge cases, which boundary
is nearest, the restart draws and their keys, one step of the update rule from a restart, what
counts as found, and how many targets FAB-T runs (fra31/auto-attack, fab_base.py)."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax.attacks import threat_model
from tests import helpers
from tests.attacks.test_fab import BIAS, IMAGES, LABELS, WEIGHTS, boundary_distances
from tests.attacks.test_fab import kkt_projection, linear_logits

fab_module = importlib.import_module('robust_jax.attacks.fab')  # attacks.fab: the function
fab = fab_module.fab


# ----------------------------------------------------------------------------- the projection
def test_a_plane_the_box_cannot_reach_moves_every_coordinate_to_its_bound():
  """B = 1, D = 3 (λ = ∞ is read at k = D, not k = B)."""
  point, normal = jnp.array([[0.2, 0.5, 0.7]]), jnp.array([[1.0, -2.0, 0.5]])
  step = fab_module.project_onto_hyperplane(point, normal, jnp.array([100.0]), 'linf')
  np.testing.assert_allclose(step, [[-0.2, 0.5, -0.7]], atol=1e-7)  # to 0, 1, 0


def test_l2_projection_drops_normal_entries_at_1e_8_and_keeps_those_at_1():
  """|w_i| <= 1e-8 does not move (the docstring's rule, at its edge); w_i = 1 moves as the KKT
  solution says."""
  point = np.array([[0.5, 0.5, 0.5]], np.float32)
  normal = np.array([[1.0, 1e-8, 2.0]], np.float32)
  step = np.asarray(fab_module.project_onto_hyperplane(
      jnp.asarray(point), jnp.asarray(normal), jnp.array([0.3]), 'l2'))
  assert step[0, 1] == 0.0
  expected = kkt_projection(point[0, [0, 2]], normal[0, [0, 2]], 0.3, 'l2')
  np.testing.assert_allclose(step[0, [0, 2]], expected, atol=1e-6)


def test_a_boundary_that_never_moves_is_never_the_nearest():
  """A 5th class scoring the top logit - 10: z_5 - z_y is -10 with gradient 0 wherever y leads,
  so |f| / (‖0‖ + TINY) is huge and FAB still reaches the nearest real boundary (closed form)."""
  shadow = lambda x: jnp.concatenate(
      [linear_logits(x), jnp.max(linear_logits(x), -1, keepdims=True) - 10.0], -1)
  _, norms = fab(shadow, IMAGES, LABELS, norm='linf')
  np.testing.assert_allclose(norms, boundary_distances('linf').min(-1), rtol=0.01)


# ----------------------------------------------------------------------------- restarts
@pytest.mark.parametrize('norm', ['linf', 'l2'])
def test_a_restart_starts_at_the_documented_draw(norm):
  """x + (r/2) u / ‖u‖, u ~ U[-1, 1]^d (L∞) or N(0, I) (L2) in the images' dtype, clipped to
  [0, 1]: images near 1, where the clip matters."""
  images = jnp.full((4, 3, 3, 1), 0.9, jnp.float32)
  key, radius = jax.random.key(3), 0.6
  start = fab_module._random_start(key, images, radius, norm)
  u = (jax.random.uniform(key, images.shape, jnp.float32, -1.0, 1.0) if norm == 'linf'
       else jax.random.normal(key, images.shape, jnp.float32))
  flat = np.asarray(u, np.float64).reshape(4, -1)
  size = (np.abs(flat).max(-1) if norm == 'linf' else np.linalg.norm(flat, axis=-1))
  expected = np.clip(0.9 + 0.5 * radius * flat / size[:, None], 0.0, 1.0).reshape(images.shape)
  np.testing.assert_allclose(start, expected, atol=1e-6)
  assert float(start.max()) == 1.0  # clipped


def test_restart_r_of_a_sweep_draws_from_fold_in_key_r():
  """FAB-T at rank 3 with 2 restarts: its second run is run 3 of the whole sweep (rank 2's runs
  are 0 and 1), so it starts at the draw of fold_in(key, 3); one step, so the model is evaluated
  at the clean images, then per run at its start and after its step."""
  points, key = [], jax.random.key(4)
  fab(helpers.recorded(linear_logits, points), IMAGES, LABELS, key, targeted=True,
      target_class_rank=3, restarts=2, num_steps=1)
  assert len(points) == 1 + 2 * 2
  expected = fab_module._random_start(jax.random.fold_in(key, 3), IMAGES, 0.3, 'linf')
  np.testing.assert_allclose(points[3], expected, atol=1e-7)


def test_one_step_from_a_restart_follows_the_update_rule():
  """From a restart's start s (recorded) on the linear model: δ = P(s) - s and δ₀ = P(x) - x onto
  the nearest class's linearised boundary (the KKT projection), α = min(‖δ‖ / (‖δ‖ + ‖δ₀‖), α_max)
  with α_max = 1 (so α is never clipped), x¹ = clip((1 - α)(s + η δ) + α (x + η δ₀), 0, 1).
  From x itself δ = δ₀ and α = 1/2: only a restart tells the rule from a constant."""
  rng = np.random.default_rng(5)
  images = jnp.asarray(rng.uniform(0.75, 0.95, IMAGES.shape), jnp.float32)  # η δ passes 1
  labels = jnp.argmax(linear_logits(images), -1)
  points, eta = [], 1.05
  fab(helpers.recorded(linear_logits, points), images, labels, jax.random.key(6), restarts=2,
      num_steps=1, alpha_max=1.0, eta=eta)
  start, x1 = points[3], points[4]
  weights, bias = (np.asarray(a, np.float64) for a in (WEIGHTS, BIAS))
  clean = np.asarray(images, np.float64)
  expected, alphas, past_one = [], [], False
  for s, x, y in zip(start, clean, np.asarray(labels)):
    logits = s @ weights + bias
    normals = weights - weights[:, [y]]  # (D, C): ∇(z_c - z_y)
    ratios = np.abs(logits - logits[y]) / (np.abs(normals).sum(0) + 1e-12)
    ratios[y] = np.inf
    j = int(np.argmin(ratios))
    w, f = normals[:, j], logits[j] - logits[y]
    step, step0 = kkt_projection(s, w, f, 'linf'), kkt_projection(x, w, f + w @ (x - s), 'linf')
    sizes = [max(np.abs(d).max(), 1e-8) for d in (step, step0)]
    alpha = sizes[0] / (sizes[0] + sizes[1])
    unclipped = (1 - alpha) * (s + eta * step) + alpha * (x + eta * step0)
    past_one |= bool(np.any(unclipped > 1))
    alphas.append(alpha)
    expected.append(np.clip(unclipped, 0.0, 1.0))
  np.testing.assert_allclose(x1, np.stack(expected), atol=1e-5)
  assert past_one and max(abs(a - 0.5) for a in alphas) > 0.01  # the clip and α both matter


def test_fab_keeps_only_misclassified_points():
  """z = (0, h(t)), t = Σ_i (x - x_clean)_i, h(t) = 1.5 (1 - e^{-2t}) - 1: concave, so each
  linearised step falls short of the boundary t = ln(3)/2 until η = 1.05 carries one past it. The
  points short of it are closer but correctly classified: never kept; of those past it, the
  closest is."""
  boundary = lambda x: 1.5 * (1 - jnp.exp(-2 * jnp.sum(x - IMAGES, -1))) - 1
  logits_fn = lambda x: jnp.stack([jnp.zeros(x.shape[0]), boundary(x)], -1)
  labels, points = jnp.zeros(len(IMAGES), jnp.int32), []
  adversarial, norms = fab(helpers.recorded(logits_fn, points), IMAGES, labels, num_steps=10)
  iterates = np.stack(points[2::2])  # x¹, x², ...: the points checked after each step
  crossed = np.asarray(boundary(jnp.asarray(iterates, jnp.float32))) > 0  # (steps, B)
  assert not crossed[0].any() and crossed.any(0).all()  # x¹ falls short; each crosses later
  assert np.all(np.asarray(boundary(adversarial)) > 0)
  distances = np.abs(iterates - np.asarray(IMAGES, np.float64)).max(-1)
  np.testing.assert_allclose(norms, np.where(crossed, distances, np.inf).min(0), rtol=1e-5)
  np.testing.assert_allclose(threat_model.distance(adversarial, IMAGES, 'linf'), norms, rtol=1e-5)


# ----------------------------------------------------------------------------- what counts
def test_a_perturbation_of_exactly_epsilon_is_found():
  """norm <= ε is inside the threat model: with ε set to the norm FAB finds, it is returned."""
  adversarial, norms = fab(linear_logits, IMAGES, LABELS, num_steps=5)
  again, norms_again = fab(linear_logits, IMAGES, LABELS, num_steps=5, epsilon=float(norms[0]))
  assert float(norms_again[0]) == float(norms[0])
  np.testing.assert_array_equal(again[0], adversarial[0])
  assert not np.array_equal(np.asarray(again[0]), np.asarray(IMAGES[0]))


def test_an_example_found_at_exactly_epsilon_takes_part_in_no_later_run():
  """z = (0, max(10 (d_1 - 0.1), d_2 - 0.3)), d = x - (0.4, 0.4): at x the far piece (d_2 = 0.3)
  is the active one, so the run from x moves d_2 only and finds it; a restart drawn with
  d_1 >= 0.1 starts past the near piece and finds a smaller norm. With ε = the first run's norm
  the example is done after that run (the reference attacks again only where norm > ε)."""
  clean = jnp.full((1, 2), 0.4, jnp.float32)
  def logits_fn(x):
    d = x - clean
    return jnp.stack([jnp.zeros(x.shape[0]), jnp.maximum(10 * (d[:, 0] - 0.1), d[:, 1] - 0.3)], -1)
  labels, key = jnp.zeros(1, jnp.int32), jax.random.key(2)
  _, first = fab(logits_fn, clean, labels, num_steps=20, epsilon=1.0)
  _, restarted = fab(logits_fn, clean, labels, key, num_steps=20, restarts=8)
  assert float(restarted[0]) < 0.5 * float(first[0])  # some restart finds the near piece
  _, norms = fab(logits_fn, clean, labels, key, num_steps=20, restarts=8,
                 epsilon=float(first[0]))
  assert float(norms[0]) == float(first[0])


def test_fab_takes_two_classes_and_fab_t_at_most_c_minus_1_targets():
  """C = 2 is enough; FAB-T with 9 target classes and C = 4 runs the 3 wrong classes, one run
  each (the model: the clean images, then 2 evaluations per step)."""
  two = lambda x: linear_logits(x)[:, :2]
  _, norms = fab(two, IMAGES, jnp.argmax(two(IMAGES), -1), num_steps=2)
  assert np.isfinite(np.asarray(norms)).all()
  points = []
  fab(helpers.recorded(linear_logits, points), IMAGES, LABELS, targeted=True, num_steps=1)
  assert len(points) == 1 + 3 * 2
