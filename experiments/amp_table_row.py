#!/usr/bin/env python3
r"""One row of the AMP paper's tables in one command: its ERM and AMP configs over seeds 0-2, and
the row's table beside the published mean ± std.

    python3 experiments/amp_table_row.py --row=cifar10_preact_resnet18 \
        [--output_dir=workdirs/amp_table] [--seeds=0,1,2] [--set=KEY.PATH=VALUE,...]

ROW is a variant of configs/erm.py and configs/amp.py (`config_defaults.AMP_TABLE_VARIANTS`, e.g.
svhn_vgg16, cifar100_wrn28_10_cutout). The runs are experiments/compare.py's, in
OUTPUT_DIR/ROW/{erm,amp}_ROW/seed<k> (a rerun resumes and reuses finished runs); this adds
OUTPUT_DIR/ROW/row.md: test error (%) at the last epoch and at the best epoch (the official
code reports the best epoch, chosen on the test set), mean ± std over the seeds, beside the
published numbers (`configs/amp.py`'s PUBLISHED_TEST_ERROR, papers.md 1.6). compare.py also
attacks each run with FGSM and PGD-20 on `--attack_examples` test images (a few seconds on a GPU).
The recipes need a GPU or TPU: on a CPU they refuse to start (config.train.require_accelerator).
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from configs import amp as amp_configs  # noqa: E402  pylint: disable=wrong-import-position
from robust_jax.config import defaults as config_defaults  # noqa: E402  pylint: disable=wrong-import-position



def define_flags() -> dict:
  """The command's flags (defined only when it runs, so that tests can import its functions
  beside other absl programs)."""
  return dict(
      row=flags.DEFINE_enum('row', None, list(config_defaults.AMP_TABLE_VARIANTS),
                            'The table row: a variant of configs/erm.py and configs/amp.py.'),
      output_dir=flags.DEFINE_string('output_dir', 'workdirs/amp_table', 'Where the rows go.'),
      seeds=flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.'),
      overrides=flags.DEFINE_string('set', '', 'Config overrides for both configs (compare.py '
                                    '--set).'),
      attack_examples=flags.DEFINE_integer('attack_examples', 500,
                                           'Test images compare.py attacks per run.'))


METHODS = ('erm', 'amp')


def compare_command(row: str, output_dir: str, seeds: list[str], overrides: str,
                    attack_examples: int) -> list[str]:
  """The compare.py command that trains and evaluates the row's ERM and AMP configs."""
  return [sys.executable, os.path.join(REPO, 'experiments', 'compare.py'),
          f'--configs=configs/erm.py:{row},configs/amp.py:{row}', f'--seeds={",".join(seeds)}',
          f'--output_dir={output_dir}', f'--attack_examples={attack_examples}',
          '--epsilon=8/255', f'--set={overrides}']


def row_table(row: str, records: dict[str, list[dict]]) -> str:
  """The row's markdown table from compare.py's records of each method ({'erm': [...], ...}),
  whose 'clean' and 'clean_best' are test accuracies in [0, 1]."""
  lines = [f'Row `{row}`: test error (%), mean ± std over the seeds run; published: mean ± std '
           "over the authors' runs (papers.md 1.6).", '',
           '| method | seeds | last epoch | best epoch | published |', '|---|---|---|---|---|']
  for method in METHODS:
    found = records.get(method, [])
    published = '{:.2f} ± {:.2f}'.format(*amp_configs.PUBLISHED_TEST_ERROR[row][method])
    if not found:
      lines.append(f'| {method.upper()} | 0 | — | — | {published} |')
      continue
    error = lambda key: 100 * (1 - np.array([r[key] for r in found]))  # noqa: E731
    show = lambda values: f'{values.mean():.2f} ± {values.std():.2f}'  # noqa: E731
    seeds = ', '.join(str(r['seed']) for r in sorted(found, key=lambda r: r['seed']))
    lines.append(f'| {method.upper()} | {seeds} | {show(error("clean"))} | '
                 f'{show(error("clean_best"))} | {published} |')
  return '\n'.join(lines) + '\n'


def read_records(row_dir: str, row: str) -> dict[str, list[dict]]:
  """compare.py's finished records of the row's two configs, per method (seeds trained as
  replicas, in replicas/seed<k>, or one by one, in seed<k>)."""
  records = {}
  for method in METHODS:
    config_dir = os.path.join(row_dir, f'{method}_{row}')
    for path in sorted(glob.glob(os.path.join(config_dir, 'seed*', 'compare.json'))
                       + glob.glob(os.path.join(config_dir, 'replicas', 'seed*', 'compare.json'))):
      with open(path) as f:
        records.setdefault(method, []).append(json.load(f))
  return records


def main(argv, flag_values: dict):
  del argv
  row = flag_values['row'].value
  if row is None:
    raise app.UsageError('--row is required, e.g. --row=cifar10_preact_resnet18; rows: '
                         + ', '.join(config_defaults.AMP_TABLE_VARIANTS))
  row_dir = os.path.join(flag_values['output_dir'].value, row)
  status = subprocess.run(compare_command(row, row_dir, flag_values['seeds'].value,
                                          flag_values['overrides'].value,
                                          flag_values['attack_examples'].value),
                          cwd=REPO, check=False).returncode
  table = row_table(row, read_records(row_dir, row))
  with open(os.path.join(row_dir, 'row.md'), 'w') as f:
    f.write(table)
  print(table + f'wrote {row_dir}/row.md')
  sys.exit(status)


if __name__ == '__main__':
  _FLAG_VALUES = define_flags()
  app.run(lambda argv: main(argv, _FLAG_VALUES))
