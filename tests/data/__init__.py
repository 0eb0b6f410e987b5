"""Tests of robust_jax.data."""
