"""The replicated training state: step, parameters, model state and optimizer state."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from robust_jax.models import ModelFns, ModelState, Params

__all__ = ['TrainState', 'init_train_state']


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimizer steps taken
  params: Params
  model_state: ModelState
  opt_state: Any


def init_train_state(model: ModelFns, optimizer: optax.GradientTransformation, key: jax.Array,
                     image_shape: tuple[int, int, int]) -> TrainState:
  params, model_state = model.init(key, image_shape)
  return TrainState(jnp.zeros((), jnp.int32), params, model_state, optimizer.init(params))
