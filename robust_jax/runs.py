"""Loading a finished (or interrupted) training run from its workdir."""
from __future__ import annotations

import json
import os

import jax
import ml_collections

from robust_jax import data, optim, sharding, train_state, validation
from robust_jax.checkpointing import Checkpointer
from robust_jax.models import build_model


def load_config(workdir: str) -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  validation.validate_config(config)
  return config


def load_run(workdir: str, step: int | None = None):
  """(config, model, params, model_state, data splits, mesh) of a training workdir."""
  config = load_config(workdir)
  mesh = sharding.make_mesh()
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec)
  optimizer, _ = optim.make_optimizer(config.optimizer, 1, 1)
  template = jax.jit(lambda k: train_state.init_train_state(model, optimizer, k, spec.image_shape),
                     out_shardings=sharding.replicated(mesh))(jax.random.key(0))
  checkpointer = Checkpointer(os.path.join(workdir, 'checkpoints'))
  state = checkpointer.restore(template, step)
  checkpointer.close()
  if state is None:
    raise FileNotFoundError(f'no checkpoint in {workdir}/checkpoints')
  return config, model, state.params, state.model_state, data.load_splits(config.dataset), mesh


