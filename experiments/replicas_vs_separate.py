#!/usr/bin/env python3
r"""The method table's seeds trained as replicas and one by one, back to back: wall time and results.

    python3 experiments/replicas_vs_separate.py --output_dir=experiments/results/replicas_vs_separate

For each config, `experiments/compare.py` runs twice with the same flags (seeds 0-2, 1 epoch, FGSM
and PGD-20 at L∞ ε = 0.1 on 1,000 test images, as `experiments/fashion_mnist_table.sh` without
AutoAttack): `--replicas=true` (the seeds in one program) then `--replicas=false` (one after the
other), each a fresh process in its own output folder, alternating per config so that both see the
same machine. Writes OUTPUT_DIR/summary.md: per config the wall time of each (training,
compilation, data loading and the attacks, everything the command does) and whether every seed's
clean, FGSM and PGD accuracy is identical; `--summarise_only` rewrites it from finished runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the cheap ones first: a stopped measurement still pairs the configs it reached
CONFIGS = ('erm', 'mdl', 'lfm', 'class_similarity', 'amp', 'dropattack')
MODES = {'replicas': 'true', 'separate': 'false'}
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'workdirs/replicas_vs_separate', 'Where to write.')
_SUMMARISE_ONLY = flags.DEFINE_bool('summarise_only', False, 'Only rewrite summary.md.')
COLUMNS = ('clean', 'fgsm', 'pgd')


def run(config: str, mode: str) -> float:
  """Runs compare.py for `config` in `mode`; returns its wall time in seconds."""
  output = os.path.join(_OUTPUT_DIR.value, mode)
  command = [sys.executable, os.path.join(REPO, 'experiments', 'compare.py'),
             f'--output_dir={output}', f'--configs=configs/{config}.py:fashion_mnist',
             '--seeds=0,1,2', '--num_epochs=1', '--epsilon=0.1', '--pgd_steps=20',
             '--attack_examples=1000', f'--replicas={MODES[mode]}']
  start = time.perf_counter()
  with open(os.path.join(_OUTPUT_DIR.value, f'log_{config}_{mode}.txt'), 'w') as log:
    subprocess.run(command, cwd=REPO, check=True, stdout=log, stderr=subprocess.STDOUT)
  return time.perf_counter() - start


def records(config: str, mode: str) -> list[dict]:
  """compare.py's records of `config`'s seeds in `mode`'s output folder."""
  folder = os.path.join(_OUTPUT_DIR.value, mode, f'{config}_fashion_mnist')
  if mode == 'replicas':
    folder = os.path.join(folder, 'replicas')
  return [json.load(open(os.path.join(folder, f'seed{seed}', 'compare.json'))) for seed in range(3)]


def summary(walls: dict[str, dict[str, float]]) -> str:
  lines = ['| config | replicas (s) | one by one (s) | replicas ÷ one by one | identical '
           f'{", ".join(COLUMNS)} of every seed |', '|---|---|---|---|---|']
  totals = {mode: 0.0 for mode in MODES}
  for config in [c for c in CONFIGS if c in walls]:
    same = all(a[key] == b[key] for a, b in zip(records(config, 'replicas'),
                                                  records(config, 'separate')) for key in COLUMNS)
    wall = walls[config]
    for mode in MODES:
      totals[mode] += wall[mode]
    lines.append(f'| {config} | {wall["replicas"]:.0f} | {wall["separate"]:.0f} | '
                 f'{wall["replicas"] / wall["separate"]:.3f} | {"yes" if same else "NO"} |')
  lines.append(f'| **all six** | {totals["replicas"]:.0f} | {totals["separate"]:.0f} | '
               f'{totals["replicas"] / totals["separate"]:.3f} | |')
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  walls_path = os.path.join(_OUTPUT_DIR.value, 'wall_seconds.json')
  walls = json.load(open(walls_path)) if os.path.exists(walls_path) else {}
  if not _SUMMARISE_ONLY.value:
    for config in CONFIGS:
      walls[config] = {mode: run(config, mode) for mode in MODES}
      with open(walls_path, 'w') as f:
        json.dump(walls, f, indent=1)
  with open(os.path.join(_OUTPUT_DIR.value, 'summary.md'), 'w') as f:
    f.write(summary(walls))
  print(summary(walls))


if __name__ == '__main__':
  app.run(main)
