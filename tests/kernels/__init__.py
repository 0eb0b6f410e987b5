"""Tests of robust_jax.kernels."""
