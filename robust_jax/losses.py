"""Per-example losses on logits shared by methods and attacks. All return shape (B,)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def soft_cross_entropy(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
  """-sum_j t_j log softmax(z)_j. logits, target_probs: (B, C) -> (B,)."""
  return -jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy with integer labels. logits (B, C), labels (B,) -> (B,)."""
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def kl_divergence(reference_logits: jax.Array, logits: jax.Array) -> jax.Array:
  """KL(softmax(reference) || softmax(logits)). (B, C), (B, C) -> (B,)."""
  reference_log_probs = jax.nn.log_softmax(reference_logits)
  return jnp.sum(jnp.exp(reference_log_probs) * (reference_log_probs - jax.nn.log_softmax(logits)),
                 axis=-1)
