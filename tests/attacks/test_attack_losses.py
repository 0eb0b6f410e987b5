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
