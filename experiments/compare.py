#!/usr/bin/env python3
r"""Trains a list of configs over several seeds, evaluates each, and writes a comparison table.

    python experiments/compare.py --output_dir=workdirs/compare_fashion_mnist \
        --configs=configs/erm.py:fashion_mnist,configs/amp.py:fashion_mnist,... \
        --seeds=0,1,2 --num_epochs=1 --epsilon=0.1 --attack_examples=1000

The seeds of a config train as replicas in one program (`robust_jax.training.replicas`; each
replica equals its separate run) in OUTPUT_DIR/<config>_<variant>, each seed's run in its
replicas/seed<k>; `--replicas=false`, and by default a paper-scale config
(`train.require_accelerator`), trains them one after the other, each seed in
OUTPUT_DIR/<config>_<variant>/seed<k>. A run's train time is then the replica run's divided by
the number of seeds. Each (config, seed) run (rerunning resumes and skips
finished runs, refusing a finished run made with other epochs, overrides or attack settings;
`--table_only` tabulates the finished ones and neither trains nor attacks), then is evaluated:
clean accuracy on the full test set, FGSM (one step of ε) and PGD-k (L∞, random start, step ε/4)
accuracy on the first `--attack_examples` test images; with `--autoattack` also AutoAttack
(standard: APGD-CE, APGD-T, FAB-T, Square; `robustness.evaluate_autoattack`) on the same images
at the same ε, whose column is the accuracy after the whole sequence (a finished run without it
gets it on the next invocation; nothing retrains; a config whose seeds do not all have it shows
the mean over those that do, with their count). Text datasets (token ids: no pixels to attack)
get clean accuracy only; their attack columns read '—' in the table (empty in runs.csv, no bar
in the plot), and a table of text runs only has no attack columns. Writes `table.md` (mean ± std over seeds), `runs.csv` (one row per run) and
`accuracy.png` (bar plot). `--set` applies config overrides to every config, as benchmark.py's
(`robust_jax/config/overrides.py`), e.g. `--set=dataset.max_length=136`; each record keeps them,
and a finished run is reused only with the same ones (in any order). Keys that compare.py's own
flags set (seed, train.num_epochs, robustness.*) are refused there.
"""
from __future__ import annotations

import csv
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from robust_jax import data, json_utils  # noqa: E402
from robust_jax.training import loop as train  # noqa: E402
from robust_jax.config import overrides as config_overrides
from robust_jax.evaluation import robustness
from robust_jax.config.files import config_name, load_config_file  # noqa: E402
from robust_jax.training import run_layout  # noqa: E402
from robust_jax.training.runs import load_run  # noqa: E402

_CONFIGS = flags.DEFINE_list('configs', None, 'Config files with variant, path:variant.',
                             required=True)
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds.')
_NUM_EPOCHS = flags.DEFINE_integer('num_epochs', None, 'Override train.num_epochs of every config.')
_SET = flags.DEFINE_string('set', '', 'Config overrides for every config, comma-separated '
                           "KEY.PATH=VALUE (as --config.KEY.PATH=VALUE of robust_jax.main), e.g. "
                           "'dataset.max_length=136'.")
_EPSILON = flags.DEFINE_string('epsilon', '0.1', 'L∞ ε for FGSM and PGD, as text.')
_PGD_STEPS = flags.DEFINE_integer('pgd_steps', 20, 'PGD steps.')
_ATTACK_EXAMPLES = flags.DEFINE_integer('attack_examples', 1000, 'Test images attacked (0 = all).')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'workdirs/compare', 'Where runs and tables go.')
_AUTOATTACK = flags.DEFINE_bool('autoattack', False,
                                 'Also run the standard AutoAttack at ε: one more column.')
_REPLICAS = flags.DEFINE_enum(
    'replicas', 'auto', ['auto', 'true', 'false'],
    "Train a config's seeds as replicas in one program ('true'), one by one ('false'), or "
    "'auto': as replicas unless the config is paper-scale (train.require_accelerator: one "
    'model fills a device, and replicas would multiply its memory).')
_TABLE_ONLY = flags.DEFINE_bool(
    'table_only', False, 'Write the table from the finished runs only; train and attack nothing.')


def run_config(spec: str, seed: int):
  """The config of `spec`'s run with `seed`, as this command's flags set it."""
  config = config_overrides.apply_overrides(load_config_file(spec), _overrides())
  config.seed = seed
  if _NUM_EPOCHS.value:
    config.train.num_epochs = _NUM_EPOCHS.value
  config.robustness.update(epsilons=(_EPSILON.value,), attacks=('fgsm', 'pgd'),
                           pgd_steps=_PGD_STEPS.value, pgd_relative_step_size=0.25,
                           num_examples=_ATTACK_EXAMPLES.value)
  return config


def as_replicas(spec: str) -> bool:
  """Whether `spec`'s seeds train as replicas (`--replicas`)."""
  if _REPLICAS.value == 'auto':
    return not run_config(spec, 0).train.require_accelerator
  return _REPLICAS.value == 'true'


def run_folder(spec: str, seed: int) -> str:
  """Where the run of `spec` with `seed` is: a replica folder, or a folder of its own."""
  config_dir = os.path.join(_OUTPUT_DIR.value, config_name(spec))
  if as_replicas(spec):
    return os.path.join(config_dir, run_layout.REPLICAS_FOLDER, f'seed{seed}')
  return os.path.join(config_dir, f'seed{seed}')


def train_replicas(spec: str, seeds: list[int]) -> float | None:
  """Trains the seeds of `spec` that have no record yet as replicas in one program; returns the
  training time per replica (None when every seed has its record)."""
  if all(os.path.exists(os.path.join(run_folder(spec, seed), 'compare.json')) for seed in seeds):
    return None
  config = run_config(spec, seeds[0])
  config.train.seeds = tuple(seeds)
  start = time.perf_counter()
  results = train.train_and_evaluate(config, os.path.join(_OUTPUT_DIR.value, config_name(spec)))
  if 'stopped_at_step' in results:
    sys.exit(f'interrupted at step {results["stopped_at_step"]}; rerun to resume')
  return (time.perf_counter() - start) / len(seeds)


def train_and_attack(spec: str, seed: int, workdir: str,
                     replica_seconds: float | None = None) -> dict:
  """Trains (or reuses) one run and returns its row of the table; `replica_seconds`: the run
  was trained as a replica (in `workdir`, a replica folder), in that much time per replica."""
  record_path = os.path.join(workdir, 'compare.json')
  if os.path.exists(record_path):
    record = load_record(record_path)
    if _AUTOATTACK.value and record['fgsm'] is not None and record.get('autoattack') is None:
      add_autoattack(record, workdir)
      json_utils.dump(record, record_path)
    return record
  config = run_config(spec, seed)
  start = time.perf_counter()
  results = train.train_and_evaluate(config, workdir)  # a finished replica: evaluated only
  train_seconds = replica_seconds or time.perf_counter() - start
  if 'stopped_at_step' in results:
    sys.exit(f'interrupted: {workdir} saved step {results["stopped_at_step"]}; rerun to resume')
  record = {'config': config_name(spec), 'seed': seed, 'epochs': results['epochs'],
            'clean': results['test_accuracy'], 'clean_best': results['best_test_accuracy'],
            'fgsm': None, 'pgd': None, 'pgd_selected': None,
            'selected_step': results.get('selected', {}).get('step'),
            'train_seconds': train_seconds, 'replicas': bool(replica_seconds),
            'attack_examples': None,
            'epsilon': None, 'pgd_steps': None, 'overrides': _overrides(), 'warnings': []}
  if data.spec_for(config.dataset).modality != 'text':
    config, model, params, model_state, splits, mesh = load_run(workdir)
    attacked = robustness.evaluate(model, params, model_state, splits.test, config.robustness,
                                   mesh)
    labels = robustness.attack_labels(config.robustness)
    row_accuracy = attacked['accuracy'][_EPSILON.value]
    record.update(fgsm=row_accuracy['FGSM'], pgd=row_accuracy[labels['pgd']],
                  attack_examples=attacked['num_examples'], epsilon=_EPSILON.value,
                  pgd_steps=_PGD_STEPS.value, warnings=attacked['warnings'])
    if results.get('selected', {}).get('metric', '').startswith('validation/'):
      add_selected(record, workdir, results['selected']['step'], labels['pgd'])
    if _AUTOATTACK.value:
      add_autoattack(record, workdir)
  json_utils.dump(record, record_path)
  return record


def add_selected(record: dict, workdir: str, step: int, pgd_label: str) -> None:
  """Adds PGD accuracy at the checkpoint the run selected on its validation split (W/best/STEP,
  `train.select_by`) on the same test images, beside the last checkpoint's: 'pgd_selected'."""
  config, model, params, model_state, splits, mesh = load_run(workdir, step, folder='best')
  attacked = robustness.evaluate(model, params, model_state, splits.test, config.robustness, mesh)
  record['pgd_selected'] = attacked['accuracy'][_EPSILON.value][pgd_label]


def add_autoattack(record: dict, workdir: str) -> None:
  """Adds the run's AutoAttack (standard) accuracy at its ε on its attacked images to `record`:
  'autoattack' (after the whole sequence), 'autoattack_seconds' (the four attacks, compilation
  included) and 'gradient_masking' (the flags that fired)."""
  config, model, params, model_state, splits, mesh = load_run(workdir)
  results = robustness.evaluate_autoattack(model, params, model_state, splits.test,
                                           config.robustness, mesh)
  last = results['autoattack']['sequence'][-1]
  record.update(autoattack=results['accuracy'][record['epsilon']][last],
                autoattack_seconds=sum(results['seconds'][record['epsilon']][label]
                                       for label in results['autoattack']['sequence']),
                gradient_masking=[flag for flag, fired in results['gradient_masking'].items()
                                  if fired])
  record['warnings'] = record['warnings'] + results['warnings']


# Keys this command sets itself, from its own flags.
_OWN_KEYS = {'seed': '--seeds', 'train.num_epochs': '--num_epochs',
             'robustness': '--epsilon, --pgd_steps, --attack_examples'}


def _overrides() -> list[str]:
  """`--set` as a list of 'KEY.PATH=VALUE'; refuses a key that a flag of this command sets."""
  overrides = config_overrides.split_overrides(_SET.value)
  for override in overrides:
    key = override.partition('=')[0]
    own = next((flag for prefix, flag in _OWN_KEYS.items()
                if key == prefix or key.startswith(prefix + '.')), None)
    if own:
      raise app.UsageError(f'--set={override}: compare.py sets {key} itself; use {own}')
  return overrides


def load_record(path: str) -> dict:
  with open(path) as f:
    return _check_reusable(json.load(f), path)


def _check_reusable(record: dict, path: str) -> dict:
  """Returns a finished run's record, or raises if it was made with other settings (attack
  settings are None in the records of text runs, which were not attacked; a record without
  'overrides' was made without)."""
  requested = {'epochs': _NUM_EPOCHS.value, 'epsilon': _EPSILON.value,
               'pgd_steps': _PGD_STEPS.value, 'attack_examples': _ATTACK_EXAMPLES.value or None}
  stale = {key: (record[key], value) for key, value in requested.items()
           if value is not None and record.get(key) is not None and record[key] != value}
  recorded_overrides = record.get('overrides', [])
  if sorted(recorded_overrides) != sorted(_overrides()):
    stale['overrides'] = (recorded_overrides, _overrides())
  if stale:
    reuse = (f'rerun with --set={",".join(recorded_overrides)!r} to use it, '
             if 'overrides' in stale and recorded_overrides else '')
    raise app.UsageError(f'{path} was made with other settings (recorded, requested): {stale}; '
                         f'{reuse}use another --output_dir or delete the run folder.')
  return record


def summarise(records: list[dict]) -> list[dict]:
  """One row per config: (mean, std) over its seeds per column, None where no seed has a value.
  AutoAttack, the costliest column, may cover only some seeds: 'autoattack_seeds' counts them."""
  rows = []
  for name in dict.fromkeys(r['config'] for r in records):
    runs = [r for r in records if r['config'] == name]
    row = {'config': name, 'seeds': len(runs), 'epochs': runs[0]['epochs']}
    for key in ('clean', 'clean_best', 'fgsm', 'pgd', 'pgd_selected', 'autoattack',
                'train_seconds'):
      # Records made before best-epoch tracking hold the last evaluation only.
      values = [r.get(key, r['clean'] if key == 'clean_best' else None) for r in runs]
      if key in ('autoattack', 'pgd_selected'):  # not every run has them
        values = [value for value in values if value is not None]
        row[f'{key}_seeds'] = len(values)
      if not values or None in values:  # a text run's attacks, or AutoAttack: not run
        row[key] = None
        continue
      values = np.array(values)
      row[key] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    rows.append(row)
  return rows


def _mean_std(pair, seeds: int, scale: float, digits: int) -> str:
  """'mean ± std' of a (mean, std) pair, scaled; the mean alone for a single seed; '—' for None."""
  if pair is None:
    return '—'
  mean = f'{scale * pair[0]:.{digits}f}'
  return f'{mean} ± {scale * pair[1]:.{digits}f}' if seeds > 1 else mean


def _attack_columns(rows) -> list[tuple[str, str]]:
  """(record key, name) of the attack columns: none when every run is text; AutoAttack's only
  where some run has it."""
  if all(row['pgd'] is None for row in rows):
    return []
  columns = [('fgsm', 'FGSM'), ('pgd', f'PGD-{_PGD_STEPS.value}')]
  if any(row['pgd_selected'] is not None for row in rows):  # runs with a validation split
    columns.append(('pgd_selected', f'PGD-{_PGD_STEPS.value} at the selected checkpoint'))
  if any(row['autoattack'] is not None for row in rows):
    columns.append(('autoattack', 'AutoAttack'))
  return columns


def markdown(rows, attack_examples: int | None) -> str:
  """The table; `attack_examples`: images attacked per image run (None when all runs are text)."""
  columns = _attack_columns(rows)
  lines = ['| config | seeds | epochs | clean, last | clean, best evaluation | '
           + ''.join(f'{name} ε={_EPSILON.value} | ' for _, name in columns)
           + 'train time per run (s) |', '|---' * (6 + len(columns)) + '|']
  for row in rows:
    def pct(key, row=row):
      seeds = row.get(f'{key}_seeds', row['seeds'])
      partial = key in ('autoattack', 'pgd_selected') and 0 < seeds < row['seeds']
      return _mean_std(row[key], seeds, 100, 2) + (
          f' ({seeds} of {row["seeds"]} seeds)' if partial else '')

    lines.append(f'| {row["config"]} | {row["seeds"]} | {row["epochs"]:g} | {pct("clean")} | '
                 f'{pct("clean_best")} | ' + ''.join(f'{pct(key)} | ' for key, _ in columns)
                 + f'{_mean_std(row["train_seconds"], row["seeds"], 1, 0)} |')
  names = ' / '.join(name for _, name in columns)
  attacks = (f'{names} (L∞; FGSM one step of ε, PGD from a random start with step ε/4'
             + ('; AutoAttack standard: APGD-CE, APGD-T, FAB-T, Square, accuracy after all four'
                if any(key == 'autoattack' for key, _ in columns) else '')
             + f') on the first {attack_examples} test images.' if attack_examples is not None
             else 'no attacks (text data: no pixels to attack).')
  if columns and any(row['pgd'] is None for row in rows):
    attacks += ' —: text data, clean accuracy only (no pixels to attack).'
  elif (any(key == 'autoattack' for key, _ in columns)
        and any(row['autoattack'] is None for row in rows)):
    attacks += ' —: AutoAttack not run for that config.'
  if any(key == 'pgd_selected' for key, _ in columns):
    attacks += (' "At the selected checkpoint": the checkpoint with the best validation metric '
                '(`train.select_by`, W/best), on the same test images; the other columns are the '
                'last checkpoint.')
  return '\n'.join(lines) + (
      '\n\nAccuracy (%) as mean ± std over seeds; clean on the full test set after the last '
      'epoch and at the best evaluation (the AMP code reports the best epoch), ' + attacks)


def bar_plot(rows, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4))
  positions = np.arange(len(rows))
  bars = [('clean', 'clean'), *_attack_columns(rows)]
  width = 0.8 / len(bars)
  for offset, (key, label) in enumerate(bars):
    pairs = [r[key] or (np.nan, np.nan) for r in rows]  # no bar for a text run's attacks
    seeds = [r['autoattack_seeds'] if key == 'autoattack' else r['seeds'] for r in rows]
    axes.bar(positions + (offset - (len(bars) - 1) / 2) * width,
             [100 * mean for mean, _ in pairs], width,
             yerr=[100 * std if n > 1 else np.nan for (_, std), n in zip(pairs, seeds)],
             label=label, capsize=3)  # no error bar from a single seed
  axes.set_xticks(positions, [r['config'] for r in rows], rotation=20, ha='right')
  axes.set_ylabel('accuracy (%)')
  axes.set_ylim(0, 110)
  axes.legend(ncol=len(bars), loc='upper center')
  axes.set_title(f'L∞ ε = {_EPSILON.value}, mean ± std over seeds' if len(bars) > 1
                 else 'clean test accuracy, mean ± std over seeds')
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  start = time.perf_counter()
  records = []
  seeds = [int(seed) for seed in _SEEDS.value]
  replica_seconds = {spec: train_replicas(spec, seeds) for spec in _CONFIGS.value
                     if not _TABLE_ONLY.value and as_replicas(spec)}
  for seed in seeds:  # seeds outermost: a stopped run still covers every config
    for spec in _CONFIGS.value:
      if _TABLE_ONLY.value:  # neither trains nor attacks; runs made either way are found
        config_dir = os.path.join(_OUTPUT_DIR.value, config_name(spec))
        found = [path for path in (
            os.path.join(config_dir, run_layout.REPLICAS_FOLDER, f'seed{seed}', 'compare.json'),
            os.path.join(config_dir, f'seed{seed}', 'compare.json')) if os.path.exists(path)]
        if found:
          records.append(load_record(found[0]))
        continue
      records.append(train_and_attack(spec, seed, run_folder(spec, seed),
                                      replica_seconds.get(spec)))
      print(json.dumps(records[-1]), flush=True)
  if not records:
    raise app.UsageError(f'no finished runs in {_OUTPUT_DIR.value}')
  rows = summarise(records)
  table = markdown(rows, next((r['attack_examples'] for r in records
                               if r['attack_examples'] is not None), None))
  train_seconds = sum(r['train_seconds'] for r in records)
  overrides_note = f' Config overrides: `{_SET.value}`.' if _overrides() else ''
  with open(os.path.join(_OUTPUT_DIR.value, 'table.md'), 'w') as f:
    f.write(table + overrides_note + f'\n\nTraining time summed over the {len(records)} runs: '
            f'{train_seconds / 60:.0f} min; wall time of this invocation (finished runs are '
            f'reused, attacks included): {(time.perf_counter() - start) / 60:.0f} min.\n')
  with open(os.path.join(_OUTPUT_DIR.value, 'runs.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=[k for k in records[0] if k != 'warnings'],
                            extrasaction='ignore')
    writer.writeheader()
    writer.writerows(records)
  bar_plot(rows, os.path.join(_OUTPUT_DIR.value, 'accuracy.png'))
  print(table)
  print(f'wrote {_OUTPUT_DIR.value}/table.md, runs.csv, accuracy.png')


if __name__ == '__main__':
  app.run(main)
