"""A workdir's config: `config.json`, `config_history.jsonl`, reading the config that trained a
checkpoint, comparing configs and recording accepted changes; and reading and writing a workdir's
JSON files (a damaged one is a one-line WorkdirError naming it).

`config.json` is written when a run starts with no checkpoint and describes every checkpoint in
the workdir: later runs rewrite only its `NEUTRAL_KEYS` (logging, checkpointing, evaluation
batching, robustness settings, multi-host plumbing), which cannot change the trained weights or the
results. Other changes are refused, or accepted with `allow_config_change=True` when every array
keeps its shape (`robust_jax.training.workdir.claim`); each accepted change is appended to
`config_history.jsonl` with the step from which it applies, e.g.

    {"step": 1200, "changes": {"train.num_epochs": [3, 5]}}

so the config that trained the newest weights is config.json with every recorded change applied
(`read_config`). Keys are compared flattened ('optimizer.learning_rate').
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from robust_jax.config import defaults as config_defaults
from robust_jax.config.schema import ConfigError

__all__ = ['ADDED_KEYS', 'CONFIG_FILE', 'HISTORY_FILE', 'NEUTRAL_KEYS', 'WorkdirError',
           'config_changes', 'describe_changes', 'flatten', 'read_config', 'read_history',
           'record_changes', 'write_config']

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.jsonl'
# Keys (or whole sections) that change only logging, checkpointing, evaluation, the devices or
# multi-host plumbing: a resumed run ends with the same weights whatever they are, up to float
# rounding for the device count (eval.num_examples changes how many test examples the clean
# accuracy counts; results.json records that number).
NEUTRAL_KEYS = ('train.log_every_steps', 'train.eval_every_epochs', 'train.log_grad_norm',
                'train.checkpoint_every_steps', 'train.checkpoint_every_minutes',
                'train.max_checkpoints_to_keep', 'train.num_devices', 'train.require_accelerator',
                'eval.batch_size', 'eval.num_examples', 'eval.robust_examples', 'train.select_by',
                'robustness', 'distributed')
# Keys added after workdirs were first written, with the value that reproduces the older runs
# (the text-only dataset keys: image runs never read them).
ADDED_KEYS = {'train.num_steps': 0, 'train.checkpoint_every_minutes': 0.0,
              'train.compute_dtype': 'float32', 'train.num_devices': 0,
              'train.require_accelerator': False, 'eval.num_examples': 0,
              'dataset.validation_examples': 0, 'eval.robust_examples': 0,
              'train.select_by': 'clean', 'train.seeds': (), 'train.sweep': (),
              'train.sweep_values': (), 'train.replica_batching': 'auto',
              **{f'dataset.{key}': value
                 for key, value in config_defaults.TEXT_DATASET_DEFAULTS.items()}}
_ABSENT = '(absent)'


class WorkdirError(ConfigError):
  """The workdir holds another experiment, one of its files is damaged, or not every process can
  see it."""


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
  old, now = flatten(json_like(stored)), flatten(json_like(new))
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


def record_changes(workdir: str, new: dict, changes: list[tuple[str, Any, Any]],
                   step: int) -> None:
  """Writes `new`'s neutral keys into config.json and appends `changes` to the history."""
  original = _read_json(workdir)
  refreshed = json_like(original)
  for key in NEUTRAL_KEYS:
    _set_key(refreshed, key, _get_key(new, key))
  if refreshed != original:
    write_config(workdir, refreshed)
  if changes:
    records = read_history(workdir) + [
        {'step': step, 'changes': {key: [old, now] for key, old, now in changes}}]
    write_atomically(os.path.join(workdir, HISTORY_FILE),
                     ''.join(json.dumps(record) + '\n' for record in records))


def json_like(config: Mapping) -> dict:
  """A deep copy of `config` as JSON would store it (tuples become lists)."""
  return json.loads(json.dumps(config))


def _read_json(workdir: str) -> dict | None:
  return read_json_object(os.path.join(workdir, CONFIG_FILE))


def read_json_object(path: str) -> dict | None:
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


def write_config(workdir: str, config: dict) -> None:
  write_atomically(os.path.join(workdir, CONFIG_FILE), json.dumps(config, indent=2) + '\n')


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


def write_atomically(path: str, text: str) -> None:
  """Readers on any host see the old file or the new one, never a partial write."""
  partial = f'{path}.partial'
  with open(partial, 'w') as f:
    f.write(text)
  os.replace(partial, path)
