"""Every method registers itself in `robust_jax.objectives` when imported here."""
from robust_jax.methods import adversarial_training  # noqa: F401
from robust_jax.methods import erm  # noqa: F401
from robust_jax.methods import trades  # noqa: F401
