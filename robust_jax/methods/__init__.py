"""Every method registers itself in `robust_jax.objectives` when imported here; one file each."""
from robust_jax.methods import adversarial_training  # noqa: F401
from robust_jax.methods import amp  # noqa: F401
from robust_jax.methods import class_similarity  # noqa: F401
from robust_jax.methods import dropattack  # noqa: F401
from robust_jax.methods import erm  # noqa: F401
from robust_jax.methods import lfm  # noqa: F401
from robust_jax.methods import mdl  # noqa: F401
from robust_jax.methods import trades  # noqa: F401
