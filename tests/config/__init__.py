"""Tests of robust_jax.config."""
