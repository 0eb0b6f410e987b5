"""Learning curves of a run from its `metrics.jsonl`: accuracy against epochs, clean and robust,
train / validation / test, written as `learning_curves.png` beside the metrics.

Curves drawn, where logged: 'train/accuracy' (the running mean of each logging interval, on the
augmented or adversarial training batches the method trains on), 'validation/accuracy',
'validation/robust_accuracy', 'test/accuracy' and 'test/robust_accuracy'; a vertical line marks the
selected step (`train.select_by`).
"""
from __future__ import annotations

import json
import os

__all__ = ['CURVES', 'curves', 'plot_learning_curves']

# metric -> (label, line style): solid for clean, dashed for robust.
CURVES = {
    'train/accuracy': ('train (batches trained on)', dict(color='tab:gray', alpha=0.7)),
    'validation/accuracy': ('validation, clean', dict(color='tab:blue')),
    'validation/robust_accuracy': ('validation, robust', dict(color='tab:blue', linestyle='--')),
    'test/accuracy': ('test, clean', dict(color='tab:orange')),
    'test/robust_accuracy': ('test, robust', dict(color='tab:orange', linestyle='--')),
}


def curves(metrics_path: str) -> dict[str, list[tuple[int, float]]]:
  """{metric: [(step, value)]} of every metric in CURVES that `metrics_path` logs, in step order."""
  found = {name: [] for name in CURVES}
  with open(metrics_path) as f:
    for line in f:
      record = json.loads(line)
      for name in CURVES:
        if record.get(name) is not None:
          found[name].append((record['step'], record[name]))
  return {name: sorted(points) for name, points in found.items() if points}


def plot_learning_curves(workdir: str, steps_per_epoch: int, selected_step: int | None = None,
                         title: str = '') -> str:
  """Writes `workdir/learning_curves.png` from `workdir/metrics.jsonl`; returns its path."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(figsize=(6.5, 4))
  for name, points in curves(os.path.join(workdir, 'metrics.jsonl')).items():
    label, style = CURVES[name]
    marker = None if name.startswith('train/') else 'o'
    axes.plot([step / steps_per_epoch for step, _ in points], [100 * v for _, v in points],
              label=label, marker=marker, markersize=3, **style)
  if selected_step is not None:
    axes.axvline(selected_step / steps_per_epoch, color='black', linewidth=0.8,
                 label=f'selected (step {selected_step})')
  axes.set_xlabel('epoch')
  axes.set_ylabel('accuracy (%)')
  axes.grid(alpha=0.3)
  axes.legend(fontsize=7)
  axes.set_title(title or os.path.basename(os.path.normpath(workdir)))
  figure.tight_layout()
  path = os.path.join(workdir, 'learning_curves.png')
  figure.savefig(path, dpi=120)
  plt.close(figure)
  return path
