"""Loading a finished (or interrupted) training run from its workdir."""
from __future__ import annotations

import os

import jax
import ml_collections

from robust_jax import data, sharding
from robust_jax.config import validation
from robust_jax.errors import UserError
from robust_jax.models import build_model
from robust_jax.training import replicas, run_layout, workdir as workdir_lib
from robust_jax.training.checkpointing import Checkpointer, saved_steps

__all__ = ['RunNotFoundError', 'load_config', 'load_run']


class RunNotFoundError(UserError, FileNotFoundError):
  """The folder is not a training workdir, or has no checkpoint (for the step asked for)."""


def load_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
  """The validated config that trained the checkpoint at `step` of `workdir` (default: the newest
  weights; see `workdir.read_config`).

  Raises RunNotFoundError when `workdir` has no config.json.
  """
  config = workdir_lib.read_config(workdir, step)
  if config is None:
    raise RunNotFoundError(f'{workdir}: not a training workdir (it has no config.json)')
  validation.validate_config(config)
  return config


def load_run(workdir: str, step: int | None = None, devices=None, folder: str = 'checkpoints'):
  """(config, model, params, model_state, data splits, mesh) of a training workdir.

  step: the checkpoint to load (default: the newest) from `folder` ('checkpoints', or 'best': the
  selected checkpoint, `training.periodic_evaluation`), with the config that trained it (changes
  recorded from `step` on are not applied). Raises RunNotFoundError in one line when `workdir` is
  not a training workdir or has no checkpoint, `checkpointing.StepNotFoundError` when `step` has
  none; a damaged checkpoint, or one of another run or model, is refused
  (`checkpointing.Checkpointer.restore`), never replaced by an older one, and data other than
  the data the run was trained on raise `workdir.WorkdirError` (`workdir.check_data`).
  """
  directory = os.path.join(workdir, folder)
  steps = saved_steps(directory)
  if not steps:
    load_config(workdir)  # not being a workdir at all is the first thing to say
    raise RunNotFoundError(f'no checkpoint in {directory}: train first, or name another workdir')
  step = steps[-1] if step is None else step
  config = load_config(workdir, step)
  specs = replicas.replica_specs(config)
  if specs:
    folders = os.path.join(workdir, run_layout.REPLICAS_FOLDER)
    raise RunNotFoundError(
        f'{workdir}: a run of {len(specs)} replicas in one program; name one replica\'s workdir, '
        f'e.g. {os.path.join(folders, specs[0].name)} (all: {", ".join(s.name for s in specs)})')
  mesh = sharding.make_mesh(devices)
  template = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding.replicated(mesh)),
      workdir_lib.train_state_shapes(config))
  # read-only: a training may hold the workdir
  checkpointer = Checkpointer(directory, read_only=True, run_id=workdir_lib.run_id(workdir))
  try:
    state = checkpointer.restore(template, step)
  finally:
    checkpointer.close()
  model = build_model(config.model, data.spec_for(config.dataset),
                      compute_dtype=config.train.compute_dtype)
  splits = data.load_splits(config.dataset)
  workdir_lib.check_data(workdir, splits)
  return config, model, state.params, state.model_state, splits, mesh
