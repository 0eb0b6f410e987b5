"""Tests of robust_jax.methods."""
