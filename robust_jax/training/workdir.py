"""One workdir, one experiment: what a workdir holds, and the checks made before training in it.

`config.json` is written when a run starts with no checkpoint and describes every checkpoint in
the workdir: later runs rewrite only its `NEUTRAL_KEYS` (logging, checkpointing, evaluation
batching, robustness settings, multi-host plumbing), which cannot change the trained weights or the
results. Other changes are refused, or accepted with `allow_config_change=True` when every array
keeps its shape; each accepted change is appended to `config_history.jsonl` with the step from
which it applies, e.g.

    {"step": 1200, "changes": {"train.num_epochs": [3, 5]}}

so the config that trained the newest weights is config.json with every recorded change applied
(`read_config`). Keys are compared flattened ('optimizer.learning_rate').

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
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from robust_jax import data
from robust_jax.config import defaults as config_defaults
from robust_jax.config.schema import ConfigError
from robust_jax.models import build_model
from robust_jax.training import optim, state as train_state

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.jsonl'
# {"run_id": ..., "data": {"train": sha256, "test": sha256}}, written with config.json when a run
# starts with no checkpoint (`claim`); workdirs from before it have none.
RUN_FILE = 'run.json'
# Keys (or whole sections) that change only logging, checkpointing, evaluation, the devices or
# multi-host plumbing: a resumed run ends with the same weights whatever they are, up to float
# rounding for the device count (eval.num_examples changes how many test examples the clean
# accuracy counts; results.json records that number).
NEUTRAL_KEYS = ('train.log_every_steps', 'train.eval_every_epochs', 'train.log_grad_norm',
                'train.checkpoint_every_steps', 'train.checkpoint_every_minutes',
                'train.max_checkpoints_to_keep', 'train.num_devices', 'train.require_accelerator',
                'eval.batch_size', 'eval.num_examples', 'robustness', 'distributed')
# Keys added after workdirs were first written, with the value that reproduces the older runs
# (the text-only dataset keys: image runs never read them).
ADDED_KEYS = {'train.num_steps': 0, 'train.checkpoint_every_minutes': 0.0,
              'train.compute_dtype': 'float32', 'train.num_devices': 0,
              'train.require_accelerator': False, 'eval.num_examples': 0,
              **{f'dataset.{key}': value
                 for key, value in config_defaults.TEXT_DATASET_DEFAULTS.items()}}
_ABSENT = '(absent)'


class WorkdirError(ConfigError):
  """The workdir holds another experiment, or not every process can see it."""


def flatten(config: Mapping, prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}, 'c': [2]} -> {'a.b': 1, 'c': [2]}; sequences are values, not sections."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def config_changes(stored: Mapping, new: Mapping) -> list[tuple[str, Any, Any]]:
  """Sorted (key, stored value, new value) of every flattened key whose value differs, except
  `NEUTRAL_KEYS`. Both configs are plain JSON-like dicts (tuples and lists compare equal); a key
  missing on one side has the value '(absent)'."""
  old, now = flatten(_json_like(stored)), flatten(_json_like(new))
  neutral = lambda key: any(key == n or key.startswith(n + '.') for n in NEUTRAL_KEYS)
  pairs = {key: (old.get(key, _ABSENT), now.get(key, _ABSENT)) for key in old.keys() | now.keys()}
  return [(key, *pairs[key]) for key in sorted(pairs)
          if not neutral(key) and pairs[key][0] != pairs[key][1]]


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
  """'optimizer.learning_rate 0.001 -> 0.003, train.num_epochs 3 -> 5' (values as JSON)."""
  show = lambda v: v if v is _ABSENT else json.dumps(v)
  return ', '.join(f'{key} {show(old)} -> {show(new)}' for key, old, new in changes)


def read_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict | None:
  """The config that trained the checkpoint at `step` of `workdir` (default: the newest weights),
  or None when there is no config.json.

  config.json plus `ADDED_KEYS`, plus the recorded changes that took effect before `step` (a
  change recorded at step s applies to the steps after s, so the checkpoint at s was trained
  without it).
  """
  config = _read_json(workdir)
  if config is None:
    return None
  for key, value in ADDED_KEYS.items():
    section, name = key.split('.')
    config.get(section, {}).setdefault(name, value)
  for record in read_history(workdir):
    if step is not None and record['step'] >= step:
      continue
    for key, (_, value) in record['changes'].items():
      _set_key(config, key, value)
  return ml_collections.ConfigDict(config)


def read_history(workdir: str) -> list[dict]:
  """The records of `config_history.jsonl`, oldest first ([] when there is none); WorkdirError
  (one line) when the file is damaged."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  try:
    records = [json.loads(line) for line in lines]
    if all(isinstance(r, dict) and isinstance(r.get('step'), int)
           and isinstance(r.get('changes'), dict) for r in records):
      return records
  except json.JSONDecodeError:
    pass
  raise WorkdirError(f'{path} is damaged (each line must be a JSON record with "step" and '
                     '"changes"); restore it from a copy, or use a new --workdir')


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
  new = _json_like(config.to_dict())
  if checkpoint_step is None:
    if writer:
      _write_json(workdir, new)
      run = {'run_id': secrets.token_hex(8)}
      if splits is not None:
        run['data'] = data_fingerprint(splits)
      _write_atomically(os.path.join(workdir, RUN_FILE), json.dumps(run, indent=1) + '\n')
      if os.path.exists(os.path.join(workdir, HISTORY_FILE)):
        os.remove(os.path.join(workdir, HISTORY_FILE))
  else:
    if splits is not None:
      check_data(workdir, splits)
    changes = _check_resume(workdir, config, allow_config_change, checkpoint_step,
                            steps_per_epoch)
    if writer:
      _record(workdir, new, changes, checkpoint_step)
  if jax.process_count() > 1:  # no process reads the workdir before process 0 has written it
    multihost_utils.sync_global_devices('robust_jax.training.workdir.claim')


def run_id(workdir: str) -> str | None:
  """The run id of `workdir` (recorded with its checkpoints), or None for a workdir from before
  run ids."""
  return (_read_object(os.path.join(workdir, RUN_FILE)) or {}).get('run_id')


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
  recorded = (_read_object(path) or {}).get('data')
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


def _record(workdir: str, new: dict, changes: list[tuple[str, Any, Any]], step: int) -> None:
  """Writes `new`'s neutral keys into config.json and appends `changes` to the history."""
  original = _read_json(workdir)
  refreshed = _json_like(original)
  for key in NEUTRAL_KEYS:
    _set_key(refreshed, key, _get_key(new, key))
  if refreshed != original:
    _write_json(workdir, refreshed)
  if changes:
    records = read_history(workdir) + [
        {'step': step, 'changes': {key: [old, now] for key, old, now in changes}}]
    _write_atomically(os.path.join(workdir, HISTORY_FILE),
                      ''.join(json.dumps(record) + '\n' for record in records))


def protected_steps(workdir: str, saved_steps: list[int]) -> tuple[int, ...]:
  """The checkpoints among `saved_steps` that no rerun may delete: all that existed when the last
  recorded config change was accepted, since they hold the experiment before any change."""
  changed_at = max((record['step'] for record in read_history(workdir)), default=-1)
  return tuple(step for step in saved_steps if step <= changed_at)


def train_state_shapes(config):
  """The train state `config` trains, as a pytree of `jax.ShapeDtypeStruct` (nothing computed)."""
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec)
  optimizer, _ = optim.make_optimizer(config.optimizer, 1, 1, validate_steps=False)
  return jax.eval_shape(
      lambda key: train_state.init_train_state(model, optimizer, key, spec.image_shape),
      jax.random.key(0))


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
    _write_atomically(token, str(nonce))
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


def _json_like(config: Mapping) -> dict:
  """A deep copy of `config` as JSON would store it (tuples become lists)."""
  return json.loads(json.dumps(config))


def _read_json(workdir: str) -> dict | None:
  return _read_object(os.path.join(workdir, CONFIG_FILE))


def _read_object(path: str) -> dict | None:
  """The JSON object in file `path`, or None when there is no such file; WorkdirError (one line,
  naming it) when it is not a JSON object."""
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except ValueError as e:  # also UnicodeDecodeError
    raise WorkdirError(f'{path} is damaged ({e}); restore it from a copy, or use a new '
                       '--workdir') from None
  if not isinstance(value, dict):
    raise WorkdirError(f'{path} holds a JSON {type(value).__name__}, not an object; restore it '
                       'from a copy, or use a new --workdir')
  return value


def _write_json(workdir: str, config: dict) -> None:
  _write_atomically(os.path.join(workdir, CONFIG_FILE), json.dumps(config, indent=2) + '\n')


def _get_key(config: Mapping, key: str):
  for part in key.split('.'):
    config = config[part]
  return config


def _set_key(config: dict, key: str, value) -> None:
  """Sets flattened `key` ('a.b') of the nested dict `config`, creating sections as needed."""
  *sections, name = key.split('.')
  for section in sections:
    config = config.setdefault(section, {})
  config[name] = value


def _write_atomically(path: str, text: str) -> None:
  """Readers on any host see the old file or the new one, never a partial write."""
  partial = f'{path}.partial'
  with open(partial, 'w') as f:
    f.write(text)
  os.replace(partial, path)


__all__ = ['ADDED_KEYS', 'NEUTRAL_KEYS', 'RUN_FILE', 'WorkdirError', 'check_data', 'claim',
           'config_changes', 'data_fingerprint', 'describe_changes', 'flatten', 'protected_steps',
           'read_config', 'read_history', 'require_shared_storage', 'run_id',
           'train_state_shapes']
