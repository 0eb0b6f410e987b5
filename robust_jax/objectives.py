"""The objective: the one pure function the train step differentiates, composed from config.

A `LossFn` maps ``(params, model_state, batch, key) -> (loss, LossAux)``, where `batch` is
``{'image': float32 (B, H, W, C) in [0, 1], 'label': int32 (B,)}``. The train step computes
``jax.value_and_grad(loss_fn, has_aux=True)`` and hands the gradient to the optimizer; it knows nothing
about any method.

The objective is assembled from five config sections, each resolved in a registry below:

  targets              labels -> target distributions (B, C)         one_hot, label_smoothing, ...
  loss                 the data term on a batch                      cross_entropy, mdl, trades, ...
  adversary            replaces the batch's images by attacked ones   none, fgsm, pgd
  weight_perturbation  evaluates the loss at perturbed parameters     none, amp, dropattack
  feature_mask         a transform at model feature hooks (training)  none, lfm

so that e.g. MDL on PGD examples, AMP + LFM, or DropAttack with class-similarity targets are config
values. A method is one module in `robust_jax/methods/` that registers itself in one of these.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax

from robust_jax.config import registry, schema as cs
from robust_jax.models import FeatureTransform, ModelFns, ModelState, Params

__all__ = ['ADVERSARIES', 'Batch', 'FEATURE_MASKS', 'LOSSES', 'LossAux', 'LossFn', 'SECTIONS',
           'TARGETS', 'TargetsFn', 'WEIGHT_PERTURBATIONS', 'build_feature_transforms',
           'build_loss_fn', 'loss_with_gradient', 'require_float32_weights']

Batch = dict[str, jax.Array]
TargetsFn = Callable[[jax.Array], jax.Array]  # labels (B,) -> target probabilities (B, C)


@flax.struct.dataclass
class LossAux:
  """What a loss returns besides its value.

  model_state: updated non-trainable state (batch-norm statistics).
  logits: (B, C) logits of the inputs the loss trained on, for the train-accuracy metric.
  metrics: extra scalar metrics to log, e.g. {'orthogonality': ...}.
  """

  model_state: ModelState
  logits: jax.Array
  metrics: dict[str, jax.Array]


LossFn = Callable[[Params, ModelState, Batch, jax.Array], tuple[jax.Array, LossAux]]

TARGETS: registry.Registry[Callable[[Any, int], TargetsFn]] = registry.Registry('targets')
LOSSES: registry.Registry[Callable[[Any, ModelFns, TargetsFn], LossFn]] = registry.Registry('loss')
ADVERSARIES: registry.Registry[Callable[[Any, ModelFns, LossFn], LossFn]] = registry.Registry(
    'adversary')
WEIGHT_PERTURBATIONS: registry.Registry[Callable[[Any, LossFn], LossFn]] = registry.Registry(
    'weight perturbation')
FEATURE_MASKS: registry.Registry[Callable[[Any], FeatureTransform | None]] = registry.Registry(
    'feature mask')

SECTIONS = {'targets': TARGETS, 'loss': LOSSES, 'adversary': ADVERSARIES,
            'weight_perturbation': WEIGHT_PERTURBATIONS, 'feature_mask': FEATURE_MASKS}


def build_feature_transforms(config) -> tuple[tuple[str, FeatureTransform], ...]:
  """((site, transform), ...) for the model's feature hooks, from `config.feature_mask`."""
  transform = FEATURE_MASKS.lookup('config.feature_mask.name', config.feature_mask.name).build(
      config.feature_mask)
  if transform is None:
    return ()
  return tuple((site, transform) for site in config.feature_mask.sites)


def build_loss_fn(config, model: ModelFns, num_classes: int) -> LossFn:
  """Composes targets -> loss -> adversary -> weight perturbation into one `LossFn`."""
  targets_fn = TARGETS.lookup('config.targets.name', config.targets.name).build(
      config.targets, num_classes)
  loss_fn = LOSSES.lookup('config.loss.name', config.loss.name).build(config.loss, model,
                                                                       targets_fn)
  loss_fn = ADVERSARIES.lookup('config.adversary.name', config.adversary.name).build(
      config.adversary, model, loss_fn)
  return WEIGHT_PERTURBATIONS.lookup(
      'config.weight_perturbation.name', config.weight_perturbation.name).build(
          config.weight_perturbation, loss_fn)


def loss_with_gradient(value: jax.Array, gradient: Params, params: Params) -> jax.Array:
  """A scalar equal to `value` whose gradient with respect to `params` is `gradient`.

  For methods that compute their total gradient themselves in fewer passes than differentiating
  their loss would take (DropAttack: one backward per pass gives input and weight gradients at
  once): value + <stop_gradient(gradient), params - stop_gradient(params)>.
  """
  linear = jax.tree.map(lambda g, p: jax.numpy.vdot(jax.lax.stop_gradient(g),
                                                    p - jax.lax.stop_gradient(p)),
                        gradient, params)
  return jax.lax.stop_gradient(value) + sum(jax.tree.leaves(linear))


def require_float32_weights(config, what: str) -> None:
  """Raises ConfigError when `config.train.compute_dtype` is bfloat16: the weight perturbations of
  AMP and DropAttack are far below bfloat16's resolution of the weights they perturb.

  bfloat16 keeps 8 significant bits, so bf16(θ + Δ) rounds θ + Δ to a step of about |θ| / 256,
  and a perturbation spread over a whole tensor is about that step: on a 640→640 3×3
  convolution with PyTorch's default initialisation and a perturbation of norm 0.1 (AMP's ε on
  VGG-16), 26 % of the elements of bf16(θ + Δ) equal bf16(θ) and what the convolution sees,
  bf16(θ + Δ) - bf16(θ), has cosine 0.95 with Δ (`tests/methods/test_weight_perturbation_precision.py`;
  a review measured 45 % and 0.79 on trained-like weights). Keeping Δ would take a second
  convolution per perturbed layer; robust_jax refuses the combination instead. `what` names the
  method.
  """
  if config.train.compute_dtype == 'bfloat16':
    raise cs.ConfigError(
        f"config.train.compute_dtype='bfloat16': {what} perturbs the weights by less than "
        "bfloat16's resolution of them (8 significant bits), so the computation would not see "
        "the perturbation; use compute_dtype 'float32'")
