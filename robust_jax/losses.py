"""Per-example losses on logits, shared by methods and attacks. All return shape (B,).

Pure functions of arrays; average them over the batch yourself (`.mean()`), as optax's losses.
Their arguments are checked when they are called or traced (`robust_jax.arguments`; one-line
ValueError or TypeError): shapes and dtypes always, values (finite logits, labels in [0, C),
targets that are distributions) only where concrete, so a jitted loss costs nothing extra.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from robust_jax import arguments

__all__ = ['cross_entropy', 'kl_divergence', 'soft_cross_entropy']

_LOGITS = '(B, C), the logits of a batch'


def check_logits(name: str, logits) -> tuple[int, int]:
  """`logits` (B, C) floating point, finite where concrete; returns (B, C)."""
  arguments.check_float_array(name, logits, _LOGITS, ndim=2, what=' (logits)')
  arguments.check_finite(name, logits)
  return tuple(logits.shape)


def check_targets(name: str, targets, shape: tuple[int, int]) -> None:
  """`targets` (B, C) floating point with the logits' shape; where concrete, distributions."""
  arguments.check_float_array(name, targets, what=' (target distributions)')
  if tuple(targets.shape) != tuple(shape):
    raise ValueError(f'{name}.shape={tuple(targets.shape)}: must be (B, C) = {tuple(shape)}, '
                     'one target distribution per example, like the logits')
  arguments.check_distributions(name, targets, 'target distributions')


def check_labels(name: str, labels, shape: tuple[int, int], source: str = 'logits have') -> None:
  """`labels` (B,) integer in [0, C) (range where concrete), for logits of `shape` (B, C)."""
  arguments.check_class_indices(name, labels, shape[0], shape[1], source)


def soft_cross_entropy(logits: jax.Array, target_probs: jax.Array) -> jax.Array:
  """Cross-entropy against target distributions: ℓ_b = -Σ_j t_{b,j} log softmax(z_b)_j.

  logits z: (B, C); target_probs t: (B, C), rows summing to 1 (one-hot, label-smoothed or
  class-similarity targets). Returns (B,).
  """
  check_targets('target_probs', target_probs, check_logits('logits', logits))
  return -jnp.sum(target_probs * jax.nn.log_softmax(logits), axis=-1)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Cross-entropy with integer labels: ℓ_b = -log softmax(z_b)_{y_b}.

  logits z: (B, C); labels y: (B,) int in [0, C). Returns (B,).
  """
  check_labels('labels', labels, check_logits('logits', logits))
  log_probs = jax.nn.log_softmax(logits)
  return -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]


def kl_divergence(reference_logits: jax.Array, logits: jax.Array) -> jax.Array:
  """KL(softmax(r_b) || softmax(z_b)) = Σ_j p_j (log p_j - log softmax(z_b)_j), p = softmax(r_b).

  The TRADES regulariser (Zhang et al. 2019) and its attack's loss. reference_logits r, logits z:
  (B, C). Returns (B,). Gradients flow through both arguments.
  """
  shape = check_logits('reference_logits', reference_logits)
  if check_logits('logits', logits) != shape:
    raise ValueError(f'logits.shape={tuple(logits.shape)}: must be (B, C) = {shape}, like '
                     'reference_logits')
  reference_log_probs = jax.nn.log_softmax(reference_logits)
  return jnp.sum(jnp.exp(reference_log_probs) * (reference_log_probs - jax.nn.log_softmax(logits)),
                 axis=-1)
