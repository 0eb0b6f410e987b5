"""`ModelFns`: a Flax classifier seen as pure functions of (params, model_state, images, key).

Objectives, attacks and weight perturbations only ever call these two functions, so they work on plain
parameter pytrees and never touch Flax internals.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax

__all__ = ['ModelFns', 'ModelState', 'Params']

Params = Any
ModelState = dict[str, Any]  # non-trainable collections, e.g. {'batch_stats': ...}; may be empty.


@dataclasses.dataclass(frozen=True)
class ModelFns:
  module: nn.Module

  def init(self, key: jax.Array, image_shape: tuple[int, int, int]) -> tuple[Params, ModelState]:
    """Initial (params, model_state) for images of `image_shape` (H, W, C)."""
    variables = self.module.init(key, jax.numpy.zeros((1, *image_shape)), train=False)
    variables = dict(variables)
    params = variables.pop('params')
    return params, variables

  def apply(self, params: Params, model_state: ModelState, images: jax.Array, *, train: bool,
            key: jax.Array | None = None) -> tuple[jax.Array, ModelState]:
    """Logits (B, num_classes) and the updated model state.

    train=True: dropout and feature transforms on (`key` required), batch norm uses and updates batch
    statistics. train=False: deterministic, running statistics, state returned unchanged.
    """
    variables = {'params': params, **model_state}
    if not train:
      return self.module.apply(variables, images, train=False), model_state
    dropout_key, feature_key = jax.random.split(key)
    logits, new_state = self.module.apply(
        variables, images, train=True, rngs={'dropout': dropout_key, 'feature_mask': feature_key},
        mutable=list(model_state))
    return logits, {**model_state, **new_state}
