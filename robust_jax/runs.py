"""Loading a finished (or interrupted) training run from its workdir."""
from __future__ import annotations

import importlib.util
import os

import jax
import ml_collections

from robust_jax import data, sharding, validation, workdir as workdir_lib
from robust_jax.checkpointing import Checkpointer, saved_steps
from robust_jax.models import build_model

__all__ = ['config_name', 'load_config', 'load_config_file', 'load_run']


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
  """The validated config that trained the newest weights of `workdir` (see `workdir.read_config`).

  Raises FileNotFoundError when `workdir` has no config.json.
  """
  config = workdir_lib.read_config(workdir)
  if config is None:
    raise FileNotFoundError(f'{workdir}: not a training workdir (it has no config.json)')
  validation.validate_config(config)
  return config


def load_run(workdir: str, step: int | None = None, devices=None):
  """(config, model, params, model_state, data splits, mesh) of a training workdir.

  step: the checkpoint to load (default: the newest). Raises FileNotFoundError in one line when
  `workdir` is not a training workdir or has no checkpoint for `step`.
  """
  config = load_config(workdir)
  directory = os.path.join(workdir, 'checkpoints')
  if not saved_steps(directory):
    raise FileNotFoundError(f'no checkpoint in {directory}')
  mesh = sharding.make_mesh(devices)
  template = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding.replicated(mesh)),
      workdir_lib.train_state_shapes(config))
  checkpointer = Checkpointer(directory)
  try:
    state = checkpointer.restore(template, step)
  finally:
    checkpointer.close()
  model = build_model(config.model, data.spec_for(config.dataset),
                      compute_dtype=config.train.compute_dtype)
  return config, model, state.params, state.model_state, data.load_splits(config.dataset), mesh
