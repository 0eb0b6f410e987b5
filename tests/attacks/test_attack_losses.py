"""robust_jax/attacks/attack_losses.py: what counts as a successful attack."""
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks import attack_losses


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1
# (experiments/results/mutation/2026-11-27_survivors.md, where they were
# tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
def test_success_is_untargeted_by_default():
  """Without `targeted`, success means misclassified (fab and apgd-t's restarts rely on it)."""
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, 0])
  np.testing.assert_array_equal(attack_losses.success(logits, labels), [False, True])


# ----------------------------------------------------------------------------- choices (#28)
def test_losses_are_untargeted_by_default():
  assert attack_losses.get('ce') is attack_losses.ce
  assert attack_losses.get('margin') is attack_losses.margin


def test_dlr_guards_tied_top_logits_with_plus_1e_12():
  """Tied π1 = π3: the denominator is the guard alone, +1e-12 as in the reference (not 0 or
  -1e-12): the loss of a correctly ranked (here: wrong) example is large and positive."""
  logits = jnp.array([[1.0, 1.0, 1.0, 0.0]])  # label 3: z_y - max_other = -1
  np.testing.assert_allclose(attack_losses.dlr(logits, jnp.array([3])), [1e12], rtol=1e-6)
  logits = jnp.array([[1.0, 1.0, 1.0, 1.0, 0.0]])  # π1 = π3 = π4: z_y - z_t = -1
  np.testing.assert_allclose(
      attack_losses.dlr_targeted(logits, jnp.array([4]), jnp.array([0])), [1e12], rtol=1e-6)


def test_targeted_dlr_averages_the_third_and_fourth_logits():
  """Sorted (4, 3, 2, 1.5, 0): π1 - (π3 + π4)/2 = 4 - 1.75; label 0, target 2: -(4 - 2) / 2.25
  (a row with π4 = 0, as the formula test's, cannot tell π3 + π4 from π3 - π4)."""
  logits = jnp.array([[4.0, 3.0, 2.0, 1.5, 0.0]])
  np.testing.assert_allclose(
      attack_losses.dlr_targeted(logits, jnp.array([0]), jnp.array([2])), [-2.0 / 2.25],
      rtol=1e-6)
