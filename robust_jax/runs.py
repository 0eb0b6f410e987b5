"""Loading a finished (or interrupted) training run from its workdir."""
from __future__ import annotations

import importlib.util
import json
import os

import jax
import ml_collections

from robust_jax import data, optim, sharding, train_state, validation
from robust_jax.checkpointing import Checkpointer
from robust_jax.models import build_model


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """The config of 'configs/x.py:variant' (variant optional), as `--config` of robust_jax.main."""
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('experiment_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant or None)


def config_name(spec: str) -> str:
  """'configs/amp.py:fashion_mnist' -> 'amp_fashion_mnist'."""
  path, _, variant = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return f'{name}_{variant}' if variant else name


def load_config(workdir: str) -> ml_collections.ConfigDict:
  with open(os.path.join(workdir, 'config.json')) as f:
    config = ml_collections.ConfigDict(json.load(f))
  validation.validate_config(config)
  return config


def load_run(workdir: str, step: int | None = None, devices=None):
  """(config, model, params, model_state, data splits, mesh) of a training workdir."""
  config = load_config(workdir)
  mesh = sharding.make_mesh(devices)
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


