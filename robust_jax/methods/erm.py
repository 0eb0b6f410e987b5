"""Empirical risk minimisation: cross-entropy against one-hot or label-smoothed targets.

Also registers the 'none' entries of the adversary, weight-perturbation and feature-mask sections,
so plain training is `loss=cross_entropy` with every other section `none`.

    L(θ) = (1/B) Σ_b  -Σ_j t_j(y_b) log softmax(f_θ(x_b))_j
    one_hot:          t(y) = e_y
    label_smoothing:  t(y) = (1 - s) e_y + s / C        (Szegedy et al. 2016)

In your own JAX code ERM is `losses.soft_cross_entropy(logits, targets).mean()` (or
`losses.cross_entropy(logits, labels).mean()`); `optax.smooth_labels` gives label-smoothed targets.
The functions below are the config adapters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from robust_jax import losses
from robust_jax.config import schema as cs
from robust_jax.models import ModelFns
from robust_jax.objectives import (ADVERSARIES, FEATURE_MASKS, LOSSES, TARGETS,
                                   WEIGHT_PERTURBATIONS, LossAux, LossFn, TargetsFn)

__all__ = ['cross_entropy_loss', 'label_smoothing_targets', 'no_adversary', 'no_feature_mask',
           'no_weight_perturbation', 'one_hot_targets']


@TARGETS.register('one_hot')
def one_hot_targets(config, num_classes: int) -> TargetsFn:
  """Adapter: labels (B,) -> one-hot targets e_y (B, num_classes)."""
  del config
  return lambda labels: jax.nn.one_hot(labels, num_classes)


@TARGETS.register('label_smoothing', {'smoothing': cs.real(
    0.0, 1.0, exclusive_maximum=True, note='smoothing 1 makes every target uniform: nothing to '
    'learn')}, defaults={'smoothing': 0.1}, sweepable=('smoothing',))
def label_smoothing_targets(config, num_classes: int) -> TargetsFn:
  """Adapter: labels (B,) -> (1 - s) e_y + s / C (B, C), s = config.smoothing (Szegedy et al.
  2016, Rethinking the Inception architecture, section 7)."""
  smoothing = config.smoothing
  return lambda labels: (1.0 - smoothing) * jax.nn.one_hot(labels, num_classes) + (
      smoothing / num_classes)


@LOSSES.register('cross_entropy')
def cross_entropy_loss(config, model: ModelFns, targets_fn: TargetsFn) -> LossFn:
  """Adapter: L = (1/B) Σ_b -Σ_j t_j(y_b) log softmax(f_θ(x_b))_j, the model in training mode
  (dropout on if configured), the whole objective key as the pass key."""
  del config

  def loss_fn(params, model_state, batch, key):
    logits, model_state = model.apply(params, model_state, batch['image'], train=True, key=key)
    loss = jnp.mean(losses.soft_cross_entropy(logits, targets_fn(batch['label'])))
    return loss, LossAux(model_state, logits, {})

  return loss_fn


@ADVERSARIES.register('none')
def no_adversary(config, model: ModelFns, loss_fn: LossFn) -> LossFn:
  """Adapter for adversary 'none': `loss_fn` on the clean batch, unchanged."""
  del config, model
  return loss_fn


@WEIGHT_PERTURBATIONS.register('none')
def no_weight_perturbation(config, loss_fn: LossFn) -> LossFn:
  """Adapter for weight_perturbation 'none': `loss_fn` at θ, unchanged."""
  del config
  return loss_fn


def _check(config):
  if config.feature_mask.sites:
    raise cs.ConfigError(f'config.feature_mask.sites={tuple(config.feature_mask.sites)!r}: '
                         "feature_mask 'none' masks no site; use sites=() or a mask, e.g. "
                         "--config.feature_mask.name=lfm")


@FEATURE_MASKS.register('none', {'sites': cs.sequence_of(cs.text())}, check=_check,
                        defaults={'sites': ()})
def no_feature_mask(config) -> None:
  """Adapter for feature_mask 'none': no transform at the feature hooks."""
  del config
  return None
