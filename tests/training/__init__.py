"""Tests of robust_jax.training."""
