"""Writes metrics as one JSON line per logged step (`metrics.jsonl`) and as TensorBoard summaries."""
from __future__ import annotations

import json
import os

import jax

from robust_jax import json_utils

__all__ = ['MetricWriter', 'logged_values']


class MetricWriter:
  """Only process 0 writes; the other processes of a multi-host run discard.

  resume_step: the step the run resumes from. Lines of an earlier `metrics.jsonl` logged after it
  (by a run stopped before its next checkpoint; the resumed run logs those steps again) and lines
  cut short by a kill are dropped first, so every step appears once.
  """

  def __init__(self, workdir: str, resume_step: int = 0):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    path = os.path.join(workdir, 'metrics.jsonl')
    _drop_lines_after(path, resume_step)
    self._jsonl = open(path, 'a')
    self._tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: dict[str, float], prefix: str = 'train') -> None:
    if not self._active:
      return
    record = {'step': step, **{f'{prefix}/{k}': v for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(json_utils.finite_or_none(record), allow_nan=False) + '\n')
    self._jsonl.flush()
    for name, value in metrics.items():
      self._tensorboard.add_scalar(f'{prefix}/{name}', value, step)

  def close(self) -> None:
    if self._active:
      self._jsonl.close()
      self._tensorboard.close()


def logged_values(workdir: str, name: str, up_to_step: int) -> list[tuple[int, float]]:
  """[(step, value)] of metric `name` (e.g. 'test/accuracy') logged in `metrics.jsonl` at steps <=
  `up_to_step`, in file order; [] when there is no such file."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if _step_of(line) <= up_to_step]
  return [(r['step'], r[name]) for r in records if r.get(name) is not None]


def _drop_lines_after(path: str, step: int) -> None:
  """Rewrites the JSON-lines file `path` (if any) without records whose 'step' exceeds `step` and
  without lines that are not complete JSON records."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  kept = [line for line in lines if _step_of(line) <= step]
  if len(kept) < len(lines):
    with open(f'{path}.partial', 'w') as f:
      f.writelines(kept)
    os.replace(f'{path}.partial', path)


def _step_of(line: str) -> float:
  """The record's step; infinity for a line that is not a complete record (no newline, bad JSON)."""
  try:
    return json.loads(line)['step'] if line.endswith('\n') else float('inf')
  except (ValueError, KeyError, TypeError):
    return float('inf')
