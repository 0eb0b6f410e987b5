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
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp

from robust_jax import config_schema as cs
from robust_jax import losses
from robust_jax.objectives import LOSSES, LossAux

SCHEMA: cs.Schema = {
    'num_subnetworks': cs.integer(2),  # K
    'orthogonality_weight': cs.real(0.0),  # λ
}


def _check(config):
  if config.model.dropout_rate == 0 or not config.model.dropout_sites:
    raise cs.ConfigError(
        f'config.model.dropout_rate={config.model.dropout_rate}: MDL needs dropout (rate > 0 and '
        'at least one dropout site), otherwise its sub-networks are identical')


def orthogonality(probs: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean pairwise cosine similarity of the true-class-masked probabilities.

  probs: (K, B, C) probabilities of K sub-networks; labels (B,). Returns (B,).
  """
  masked = probs * (1.0 - jax.nn.one_hot(labels, probs.shape[-1]))
  unit = masked / (jnp.linalg.norm(masked, axis=-1, keepdims=True) + 1e-12)
  pairs = list(itertools.combinations(range(probs.shape[0]), 2))
  return jnp.mean(jnp.stack([jnp.sum(unit[k] * unit[l], -1) for k, l in pairs]), axis=0)


@LOSSES.register('mdl', SCHEMA, check=_check,
                 defaults={'num_subnetworks': 2, 'orthogonality_weight': 1.0})
def mdl_loss(config, model, targets_fn):
  def loss_fn(params, model_state, batch, key):
    keys = jax.random.split(key, config.num_subnetworks)
    logits, states = jax.vmap(
        lambda k: model.apply(params, model_state, batch['image'], train=True, key=k))(keys)
    cross_entropy = jnp.mean(jax.vmap(losses.soft_cross_entropy, (0, None))(
        logits, targets_fn(batch['label'])))
    ortho = jnp.mean(orthogonality(jax.nn.softmax(logits), batch['label']))
    new_state = jax.tree.map(lambda s: jnp.mean(s, axis=0), states)
    return (cross_entropy + config.orthogonality_weight * ortho,
            LossAux(new_state, logits[0], {'orthogonality': ortho, 'cross_entropy': cross_entropy}))
  return loss_fn
