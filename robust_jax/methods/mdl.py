"""MDL: mask-guided divergence loss (Yang, Lin, Zhang, Yang & Zhao 2022, arXiv 2206.00913).

The network with dropout is an ensemble of sub-networks; MDL trains K of them (K independent dropout
masks, one `vmap` over the mask keys) with cross-entropy plus an orthogonality term that makes their
wrong-class beliefs diverse. The mask M = 1 - e_y removes the true class (PROPOSAL, papers.md 4.2:
the paper body could not be read; this reading matches both abstracts):

    p_k = softmax(f(x; θ, m_k)),  k = 1..K
    O   = mean_{k<l} <M ⊙ p_k, M ⊙ p_l> / (||M ⊙ p_k|| ||M ⊙ p_l|| + 1e-12)
    L   = (1/K) Σ_k CE(f(x; θ, m_k), t(y)) + λ · O                 (per example, then batch mean)

K, λ (`orthogonality_weight`, PROPOSAL default 1) and the dropout rate and sites (config.model) are
config values. Gradients flow through both terms. With batch norm, the K passes' new running
statistics are averaged (PyTorch would apply K sequential updates).

Two layers. `loss`, `terms` and `orthogonality` are pure functions of the K sub-networks' logits;
draw them with any model that has dropout, e.g.

    logits_k = jax.vmap(lambda k: apply_fn(params, images, k))(jax.random.split(key, K))
    value = mdl.loss(logits_k, labels, weight=1.0)

`mdl_loss(config, model, targets_fn)` is the adapter the `loss` config section builds.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from robust_jax import arguments, losses
from robust_jax.config import schema as cs
from robust_jax.models import ModelFns
from robust_jax.objectives import LOSSES, LossAux, LossFn, TargetsFn

__all__ = ['SCHEMA', 'loss', 'mdl_loss', 'orthogonality', 'terms']

SCHEMA: cs.Schema = {
    'num_subnetworks': cs.integer(2, note='orthogonality compares K >= 2 sub-networks'),  # K
    'orthogonality_weight': cs.real(0.0),  # λ
}


def _check(config):
  if config.model.dropout_rate == 0 or not config.model.dropout_sites:
    raise cs.ConfigError(
        f'config.model.dropout_rate={config.model.dropout_rate}: MDL needs dropout (rate > 0 and '
        'at least one dropout site), otherwise its sub-networks are identical')


def orthogonality(probs: jax.Array, labels: jax.Array) -> jax.Array:
  """MDL's per-example orthogonality O_b (Yang et al. 2022): the mean pairwise cosine similarity
  of the K sub-networks' probabilities with the true class masked out,

      O_b = mean_{k<l} <M ⊙ p_k, M ⊙ p_l> / (||M ⊙ p_k|| ||M ⊙ p_l|| + 1e-12),   M = 1 - e_{y_b}.

  probs: (K, B, C) probabilities of K ≥ 2 sub-networks; labels: (B,) int in [0, C). Returns (B,).
  """
  _check_stack('probs', probs, 'probabilities')
  arguments.check_distributions('probs', probs, 'probabilities, e.g. the softmax of logits')
  _check_labels(labels, probs, 'probs')
  return _orthogonality(probs, labels)


def _orthogonality(probs, labels):
  masked = probs * (1.0 - jax.nn.one_hot(labels, probs.shape[-1]))
  unit = masked / (jnp.linalg.norm(masked, axis=-1, keepdims=True) + 1e-12)
  pairs = list(itertools.combinations(range(probs.shape[0]), 2))
  return jnp.mean(jnp.stack([jnp.sum(unit[k] * unit[l], -1) for k, l in pairs]), axis=0)


def _check_stack(name: str, values, what: str) -> None:
  """`values` (K, B, C) floating point with K >= 2."""
  arguments.check_float_array(name, values, what=f' ({what})')
  shape = tuple(values.shape)
  if len(shape) != 3 or shape[0] < 2:
    raise ValueError(f'{name}.shape={shape}: must be (K, B, C), the {what} of K >= 2 dropout '
                     'sub-networks on the same batch')


def _check_labels(labels, stack, name: str) -> None:
  """labels (B,) int in [0, C) for a (K, B, C) stack named `name`."""
  arguments.check_class_indices('labels', labels, stack.shape[1], stack.shape[2], f'{name} has')


def terms(logits_k: jax.Array, labels: jax.Array,
          targets: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """MDL's two terms (Yang et al. 2022), (CE, O), both batch means (scalars):

      CE = (1/B) Σ_b (1/K) Σ_k -Σ_j t_j(y_b) log softmax(z_{k,b})_j,    O = (1/B) Σ_b O_b

  logits_k: (K, B, C) logits z of K ≥ 2 sub-networks (independent dropout masks);
  labels: (B,) int in [0, C); targets: (B, C) target distributions t(y), default one-hot(labels).
  O_b is `orthogonality` of the softmax probabilities.
  """
  _check_stack('logits_k', logits_k, 'logits')
  if logits_k.shape[1] == 0:
    raise ValueError(f'logits_k.shape={tuple(logits_k.shape)}: no examples (B = 0), whose mean '
                     'loss is NaN; skip the call when the batch is empty')
  arguments.check_finite('logits_k', logits_k)
  _check_labels(labels, logits_k, 'logits_k')
  if targets is None:
    targets = jax.nn.one_hot(labels, logits_k.shape[-1])
  else:
    losses.check_targets('targets', targets, logits_k.shape[1:])
  cross_entropy = jnp.mean(jax.vmap(losses.soft_cross_entropy, (0, None))(logits_k, targets))
  return cross_entropy, jnp.mean(_orthogonality(jax.nn.softmax(logits_k), labels))


def loss(logits_k: jax.Array, labels: jax.Array, *, weight: float,
         targets: jax.Array | None = None) -> jax.Array:
  """The MDL loss (Yang et al. 2022), a scalar: L = CE + λ · O with (CE, O) = `terms`.

  logits_k: (K, B, C) logits of K ≥ 2 dropout sub-networks on the same batch; labels: (B,) int;
  weight: λ ≥ 0; targets: (B, C) target distributions, default one-hot(labels). Differentiate it
  with respect to the parameters that produced logits_k; gradients flow through both terms.
  """
  arguments.check_number('weight', weight, 0.0)
  cross_entropy, ortho = terms(logits_k, labels, targets)
  return cross_entropy + weight * ortho


@LOSSES.register('mdl', SCHEMA, check=_check,
                 defaults={'num_subnetworks': 2, 'orthogonality_weight': 1.0},
                 sweepable=('orthogonality_weight',))
def mdl_loss(config, model: ModelFns, targets_fn: TargetsFn) -> LossFn:
  """Adapter: `terms` on K training-mode passes of `model`, one key each (split K of the key).

  config: the `loss` section (SCHEMA). Returns a robust_jax LossFn whose value is CE + λ · O,
  logging 'orthogonality' and 'cross_entropy'; the K new model states are averaged.
  """
  def loss_fn(params, model_state, batch, key):
    keys = jax.random.split(key, config.num_subnetworks)
    logits, states = jax.vmap(
        lambda k: model.apply(params, model_state, batch['image'], train=True, key=k))(keys)
    cross_entropy, ortho = terms(logits, batch['label'], targets_fn(batch['label']))
    new_state = jax.tree.map(lambda s: jnp.mean(s, axis=0), states)
    return (cross_entropy + config.orthogonality_weight * ortho,
            LossAux(new_state, logits[0], {'orthogonality': ortho, 'cross_entropy': cross_entropy}))
  return loss_fn
