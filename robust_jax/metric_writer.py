"""Writes metrics as one JSON line per logged step (`metrics.jsonl`) and as TensorBoard summaries."""
from __future__ import annotations

import json
import os

import jax


class MetricWriter:
  """Only process 0 writes; the other processes of a multi-host run discard."""

  def __init__(self, workdir: str):
    self._active = jax.process_index() == 0
    if not self._active:
      return
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._jsonl = open(os.path.join(workdir, 'metrics.jsonl'), 'a')
    self._tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, metrics: dict[str, float], prefix: str = 'train') -> None:
    if not self._active:
      return
    record = {'step': step, **{f'{prefix}/{k}': v for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    for name, value in metrics.items():
      self._tensorboard.add_scalar(f'{prefix}/{name}', value, step)

  def close(self) -> None:
    if self._active:
      self._jsonl.close()
      self._tensorboard.close()
