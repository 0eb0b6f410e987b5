"""Per-example losses on logits, shared by methods and attacks. All return shape (B,).

Pure functions of arrays; average them over the batch yourself (`.mean()`), as optax's losses.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ['cross_entropy', 'kl_divergence', 'soft_cross_entropy']


def soft_cross_entropy(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
  """Cross-entropy against target distributions: ℓ_b = -Σ_j t_{b,j} log softmax(z_b)_j.

  logits z: (B, C); target_probs t: (B, C), rows summing to 1 (one-hot, label-smoothed or
  class-similarity targets). Returns (B,).
  """
  return -jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy with integer labels: ℓ_b = -log softmax(z_b)_{y_b}.

  logits z: (B, C); labels y: (B,) int in [0, C). Returns (B,).
  """
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def kl_divergence(reference_logits: jax.Array, logits: jax.Array) -> jax.Array:
  """KL(softmax(r_b) || softmax(z_b)) = Σ_j p_j (log p_j - log softmax(z_b)_j), p = softmax(r_b).

  The TRADES regulariser (Zhang et al. 2019) and its attack's loss. reference_logits r, logits z:
  (B, C). Returns (B,). Gradients flow through both arguments.
  """
  reference_log_probs = jax.nn.log_softmax(reference_logits)
  return jnp.sum(jnp.exp(reference_log_probs) * (reference_log_probs - jax.nn.log_softmax(logits)),
                 axis=-1)
