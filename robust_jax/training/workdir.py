"""One workdir, one experiment: the checks made before training in a workdir (`claim`), and the
run id and data fingerprint in its `run.json`.

With no checkpoint yet, `claim` writes the run's config.json and run.json; otherwise it refuses a
config that differs from the stored one beyond its neutral keys, unless the change is allowed and
keeps every array's shape (`robust_jax.training.workdir_config`: what config.json and
config_history.jsonl hold, and which keys are neutral).

`run.json`, written with config.json, holds a random run id, recorded with every checkpoint
(`robust_jax.training.checkpointing`: another run's step folder is refused), and a fingerprint of the data
(`data_fingerprint`): the sha256 of each split's arrays as loaded, so every source (IDX, npz, TFDS,
CSV) is covered; hashing Fashion-MNIST's 70,000 images took 0.04 s on a CPU core (2026), loading
them takes longer. Resuming (`claim`) and evaluating (`check_data`) refuse other data. Workdirs from
before run.json load as before, unchecked. A damaged config.json or run.json is one line naming
the file (WorkdirError). Before any of this,
`require_shared_storage` makes the processes of a multi-host run fail together when they do not all
see one workdir, instead of hanging at the first checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from robust_jax import data
from robust_jax.models import build_model
from robust_jax.training import optim, replicas, state as train_state
# Also named here (in __all__) because runs.py and tests read them as workdir.X: ADDED_KEYS,
# WorkdirError, config_changes, read_config.
from robust_jax.training.workdir_config import (ADDED_KEYS, CONFIG_FILE, HISTORY_FILE, WorkdirError,
                                                config_changes, describe_changes, json_like,
                                                read_config, read_history, read_json_object,
                                                record_changes, write_atomically, write_config)

# {"run_id": ..., "data": {"train": sha256, "test": sha256}}, written with config.json when a run
# starts with no checkpoint (`claim`); workdirs from before it have none.
RUN_FILE = 'run.json'


def claim(workdir: str, config, checkpoint_step: int | None, allow_config_change: bool,
          steps_per_epoch: int | None = None, splits=None) -> None:
  """Makes `workdir` hold `config`'s experiment, or raises WorkdirError having written nothing.

  No checkpoint yet: (re)writes config.json, and run.json with a new run id and the fingerprint of
  `splits` (the loaded data, when given). Otherwise `splits` must be the data recorded in run.json
  (`check_data`), and `config` must equal the stored config up to
  `NEUTRAL_KEYS` (whose new values are written into config.json); with `allow_config_change`
  other changes are accepted when every array of the train state keeps its shape and the run
  does not end before `checkpoint_step` (`train.num_steps`, or `train.num_epochs` ×
  `steps_per_epoch` when that is given), and recorded in config_history.jsonl from
  `checkpoint_step` on. Only process 0 writes; every process reaches the same decision from the
  same files.
  """
  writer = jax.process_index() == 0
  new = json_like(config.to_dict())
  if checkpoint_step is None:
    if writer:
      write_config(workdir, new)
      run = {'run_id': secrets.token_hex(8)}
      if splits is not None:
        run['data'] = data_fingerprint(splits)
      write_atomically(os.path.join(workdir, RUN_FILE), json.dumps(run, indent=1) + '\n')
      if os.path.exists(os.path.join(workdir, HISTORY_FILE)):
        os.remove(os.path.join(workdir, HISTORY_FILE))
  else:
    if splits is not None:
      check_data(workdir, splits)
    changes = _check_resume(workdir, config, allow_config_change, checkpoint_step,
                            steps_per_epoch)
    if writer:
      record_changes(workdir, new, changes, checkpoint_step)
  if jax.process_count() > 1:  # no process reads the workdir before process 0 has written it
    multihost_utils.sync_global_devices('robust_jax.training.workdir.claim')


def claim_replicas(workdir: str, folders: list[str], configs: list, splits) -> None:
  """Makes each replica folder (`robust_jax.training.run_layout`) a workdir of its replica's
  config: config.json (rewritten every time, so that neutral changes reach it), and, when its
  run.json is not of this run of `workdir`, run.json with the run id '<workdir's id>-<folder
  name>' and the fingerprint of `splits`, its previous checkpoints and history removed. Only
  process 0 writes."""
  if jax.process_index() == 0:
    fingerprint = data_fingerprint(splits)
    for folder, config in zip(folders, configs):
      os.makedirs(folder, exist_ok=True)
      write_config(folder, json_like(config.to_dict()))
      expected = f'{run_id(workdir)}-{os.path.basename(folder)}'
      if run_id(folder) == expected:
        continue
      shutil.rmtree(os.path.join(folder, 'checkpoints'), ignore_errors=True)
      if os.path.exists(os.path.join(folder, HISTORY_FILE)):
        os.remove(os.path.join(folder, HISTORY_FILE))
      run = {'run_id': expected, 'data': fingerprint}
      write_atomically(os.path.join(folder, RUN_FILE), json.dumps(run, indent=1) + '\n')
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('robust_jax.training.workdir.claim_replicas')


def run_id(workdir: str) -> str | None:
  """The run id of `workdir` (recorded with its checkpoints), or None for a workdir from before
  run ids."""
  return (read_json_object(os.path.join(workdir, RUN_FILE)) or {}).get('run_id')


def data_fingerprint(splits) -> dict[str, str]:
  """{'train': sha256, 'test': sha256} of each split's images and labels (dtypes, shapes, bytes)."""
  def digest(split):
    sha = hashlib.sha256()
    for array in (split.images, split.labels):
      sha.update(f'{array.dtype.str}{array.shape}'.encode())
      sha.update(np.ascontiguousarray(array).data)
    return sha.hexdigest()
  return {'train': digest(splits.train), 'test': digest(splits.test)}


def check_data(workdir: str, splits) -> None:
  """Raises WorkdirError when `splits` are not the data `workdir` was trained on (as recorded in
  its run.json; a workdir from before run.json is not checked)."""
  path = os.path.join(workdir, RUN_FILE)
  recorded = (read_json_object(path) or {}).get('data')
  if not recorded:
    return
  for name, digest in data_fingerprint(splits).items():
    if recorded.get(name) != digest:
      raise WorkdirError(
          f'workdir {workdir} was trained on other data: {getattr(splits, name).origin} differs '
          f'from the data recorded in {path} when its training started; restore that data, or '
          'use a new --workdir')


def _check_resume(workdir: str, config, allow_config_change: bool, checkpoint_step: int,
                  steps_per_epoch: int | None = None) -> list[tuple[str, Any, Any]]:
  """The changes from the stored config to `config`, or WorkdirError when they are not allowed."""
  stored = read_config(workdir)
  if stored is None:
    raise WorkdirError(f'workdir {workdir} has checkpoints but no {CONFIG_FILE}, so what trained '
                       'them is unknown; use a new --workdir')
  changes = config_changes(stored.to_dict(), config.to_dict())
  if changes and not allow_config_change:
    raise WorkdirError(f'workdir {workdir} holds another experiment: {describe_changes(changes)}; '
                       'use a new --workdir, or --allow_config_change for keys that keep shapes')
  replica_keys = [key for key, _, _ in changes if key in replicas.REPLICA_KEYS]
  if replica_keys:
    raise WorkdirError(f'workdir {workdir}: config.{replica_keys[0]} changed; it names the '
                       'replicas this workdir trains (their folders and stacked checkpoints), so '
                       'a resume cannot change it: use a new --workdir')
  _check_run_reaches(workdir, config, checkpoint_step, steps_per_epoch)
  if changes and not _same_shapes(train_state_shapes(stored), train_state_shapes(config)):
    raise WorkdirError(f'workdir {workdir} holds another experiment: {describe_changes(changes)}; '
                       'these change the shapes of the trained arrays, so --allow_config_change '
                       'cannot apply them: use a new --workdir')
  return changes


def _check_run_reaches(workdir: str, config, checkpoint_step: int,
                       steps_per_epoch: int | None) -> None:
  """WorkdirError when `config`'s run ends before `checkpoint_step`, the newest checkpoint: the
  weights would already be past its end, and config.json would not describe them."""
  if config.train.num_steps:
    key, total = f'train.num_steps={config.train.num_steps}', config.train.num_steps
  elif steps_per_epoch:
    key = f'train.num_epochs={config.train.num_epochs}'
    total = config.train.num_epochs * steps_per_epoch
    key += f' ({total} steps at {steps_per_epoch} per epoch)'
  else:
    return  # the run's length in steps is not known yet
  if total < checkpoint_step:
    raise WorkdirError(f'workdir {workdir}: config.{key} ends before step {checkpoint_step}, '
                       'its newest checkpoint, so the weights there would not be the run the '
                       'config describes; use a new --workdir, or a run of at least '
                       f'{checkpoint_step} steps')


def protected_steps(workdir: str, saved_steps: list[int]) -> tuple[int, ...]:
  """The checkpoints among `saved_steps` that no rerun may delete: all that existed when the last
  recorded config change was accepted, since they hold the experiment before any change."""
  changed_at = max((record['step'] for record in read_history(workdir)), default=-1)
  return tuple(step for step in saved_steps if step <= changed_at)


def train_state_shapes(config):
  """The train state `config` trains, as a pytree of `jax.ShapeDtypeStruct` (nothing computed)."""
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec)
  specs = replicas.replica_specs(config)  # replicas: the first's optimizer, as the loop's
  optimizer, _ = optim.make_optimizer((specs[0].config if specs else config).optimizer, 1, 1,
                                      validate_steps=False)
  shapes = jax.eval_shape(
      lambda key: train_state.init_train_state(model, optimizer, key, spec.image_shape),
      jax.random.key(0))
  # replicas: a leading axis on every array
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct((len(specs), *a.shape), a.dtype),
                      shapes) if specs else shapes


def require_shared_storage(workdir: str) -> None:
  """Raises WorkdirError on every process together unless all processes see the same `workdir`.

  Process 0 writes a random nonce into the workdir; after a collective broadcast of the nonce (also
  the barrier that orders the write before the reads) each process reads the file back, and a
  collective all-gather tells every process who saw it. A no-op with one process.
  """
  if jax.process_count() == 1:
    return
  token = os.path.join(workdir, '.shared_storage_check')
  nonce = secrets.randbelow(2**31)
  if jax.process_index() == 0:
    write_atomically(token, str(nonce))
  nonce = int(multihost_utils.broadcast_one_to_all(np.int32(nonce)))
  try:
    with open(token) as f:
      seen = f.read() == str(nonce)
  except OSError:
    seen = False
  seen_by = np.asarray(multihost_utils.process_allgather(np.int32(seen))).reshape(-1)
  if jax.process_index() == 0:
    os.remove(token)
  blind = [i for i, ok in enumerate(seen_by) if not ok]
  if blind:
    raise WorkdirError(
        f'workdir {workdir}: process(es) {", ".join(map(str, blind))} cannot see the files process '
        f'0 writes there; the workdir must be on storage all {len(seen_by)} processes share')


def _same_shapes(a, b) -> bool:
  if jax.tree.structure(a) != jax.tree.structure(b):
    return False
  return all(x.shape == y.shape and x.dtype == y.dtype
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


__all__ = ['ADDED_KEYS', 'RUN_FILE', 'WorkdirError', 'check_data', 'claim', 'claim_replicas', 'config_changes',
           'data_fingerprint', 'protected_steps', 'read_config', 'require_shared_storage', 'run_id',
           'train_state_shapes']
