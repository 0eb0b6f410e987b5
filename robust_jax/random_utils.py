"""Per-example randomness keyed by the example's index in the global batch.

Under `jax.jit` with a sharded batch, array shapes are global, so `per_example_keys(key, B)` gives
example b the key `fold_in(key, b)` however many devices share the batch: the same config and seed
produce the same dropout masks, feature masks and augmentations on 1 or 8 devices.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ['per_example_bernoulli', 'per_example_keys']


def per_example_keys(key: jax.Array, batch_size: int) -> jax.Array:
  """(batch_size,) keys; entry b is `fold_in(key, b)`."""
  return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(batch_size))


def per_example_bernoulli(key: jax.Array, probability: float, shape: tuple[int, ...]) -> jax.Array:
  """Boolean array of `shape` (B, ...); row b is Bernoulli(`probability`) drawn from fold_in(key, b)."""
  keys = per_example_keys(key, shape[0])
  return jax.vmap(lambda k: jax.random.bernoulli(k, probability, shape[1:]))(keys)
