"""Independent implementations that tests compare robust_jax against (plain JAX, PyTorch)."""
