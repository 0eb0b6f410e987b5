"""Every method registers itself in `robust_jax.objectives` when imported here."""
from robust_jax.methods import erm  # noqa: F401
