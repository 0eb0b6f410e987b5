"""robust_jax/attacks/threat_model.py: the L2 random start and ascent direction."""
import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks import threat_model


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1
# (experiments/results/mutation/2026-11-27_survivors.md, where they were
# tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
def test_l2_random_start_radius_is_uniform_in_the_ball():
  """Uniform in the d-ball: P(r <= t ε) = t^d, so E[r] = ε d / (d + 1) (d = 2 here)."""
  epsilon, num = 0.1, 20000
  images = jnp.full((num, 2), 0.5)  # far from the [0, 1] box: no clipping
  start = threat_model.random_start(jax.random.PRNGKey(0), images, epsilon, 'l2')
  radius = np.asarray(threat_model.distance(start, images, 'l2'))
  assert radius.max() <= epsilon * (1 + 1e-5)
  np.testing.assert_allclose(radius.mean(), epsilon * 2 / 3, rtol=0.02)


def test_l2_ascent_direction_follows_a_vanishing_gradient():
  """A gradient smaller than the guard (saturated logits) still gives an ascent direction."""
  gradient = jnp.array([[3e-14, -4e-14]])
  direction = threat_model.ascent_direction(gradient, 'l2')
  assert float(jnp.sum(direction * gradient)) > 0
  assert float(jnp.linalg.norm(direction)) <= 1.0


def test_l2_ball_projection_leaves_a_delta_below_the_guard_as_it_is():
  """||δ|| below TINY (and 0): ε / (||δ|| + TINY) > 1, so δ is inside the ball and kept (a guard
  subtracted instead would flip and blow it up)."""
  delta = jnp.array([[3e-13, -4e-13], [0.0, 0.0]])  # norms 5e-13 and 0
  np.testing.assert_array_equal(threat_model.shrink_to_l2_ball(delta, 0.5), delta)
