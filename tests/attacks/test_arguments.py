"""Input checks of robust_jax/attacks/arguments.py (mutation survivors; the attacks' argument
errors as a whole are in test_attack_arguments.py)."""
import jax.numpy as jnp
import pytest

from robust_jax.attacks import arguments


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1
# (experiments/results/mutation/2026-11-27_survivors.md, where they were
# tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
@pytest.mark.parametrize('logits_shape', [(5, 3), (4, 2, 3)])
def test_check_inputs_rejects_logits_that_are_not_batch_by_classes(logits_shape):
  """(B', C) with B' != B, or (B, ..., C) with 3 axes, must be refused, each on its own."""
  images = jnp.zeros((4, 2, 2, 1))
  labels = jnp.zeros((4,), jnp.int32)
  with pytest.raises(ValueError, match='must be logits'):
    arguments.check_inputs(lambda x: jnp.zeros(logits_shape), images, labels)
