"""Tests of robust_jax.attacks."""
