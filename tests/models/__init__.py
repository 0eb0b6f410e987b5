"""Tests of robust_jax.models."""
