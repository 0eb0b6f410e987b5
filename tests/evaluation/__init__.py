"""Tests of robust_jax.evaluation."""
