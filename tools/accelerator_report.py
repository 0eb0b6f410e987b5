"""The accelerator check's environment, result rows, GPU-hours and markdown report.

Step-table columns: examples/s of robust_jax's step; "÷ hand-written" = robust_jax's throughput /
the hand-written JAX step's, "÷ PyTorch" = robust_jax's throughput / the PyTorch twin's (each the
inverse of benchmark.py's paired time ratio, the median of per-round ratios: > 1 means robust_jax
is faster).
"""
from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re

from robust_jax.config.files import config_name

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'chex', 'numpy', 'ml-collections',
            'torch')
# Issue #24's targets for one H100 in bfloat16: images/s, and the throughput ratio to the twin.
TARGET_IMAGES_PER_S = {'ERM': 50_000, 'PGD-10 AT': 6_000}
TARGET_OVER_PYTORCH = 1.5
SEEDS_PER_ROW = 3
# Training-set sizes of the AMP table's datasets (the TFDS train splits).
TRAIN_EXAMPLES = {'cifar10': 50_000, 'cifar100': 50_000, 'svhn': 73_257}
MODEL_LABELS = {'preact_resnet18': 'PreActResNet-18', 'vgg16': 'VGG-16', 'wrn28_10': 'WRN-28-10'}


def _version(distribution: str) -> str | None:
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def environment() -> dict:
  """Device, platform and versions (JAX's CUDA plugins and PyTorch's CUDA too, where present)."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.extend import backend  # pylint: disable=g-import-not-at-top

  devices = jax.devices()
  versions = {name: _version(name) for name in PACKAGES}
  versions.update({d.metadata['Name']: d.version for d in importlib.metadata.distributions()
                   if d.metadata['Name'].replace('_', '-').startswith('jax-cuda')})
  result = {'device': devices[0].device_kind, 'device_count': len(devices),
            'backend': jax.default_backend(),
            'backend_version': ' '.join(backend.get_backend().platform_version.split()),
            'python': platform.python_version(), 'platform': platform.platform(),
            'versions': {name: v for name, v in versions.items() if v is not None},
            'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}
  if importlib.util.find_spec('torch') is not None:
    import torch  # pylint: disable=g-import-not-at-top
    result['torch_cuda'] = torch.version.cuda
    result['torch_cudnn'] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
  return result


def device_folder(env: dict) -> str:
  """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
  return re.sub('[^a-z0-9]+', '-', env['device'].lower()).strip('-')


def tests_summary(output: str, status: int, command: str) -> dict:
  """pytest's exit status and its summary line ('12 passed, 1 skipped in 30.1s')."""
  lines = [line.strip('= ') for line in output.splitlines()]
  summaries = [line for line in lines if ' in ' in line and any(
      word in line for word in ('passed', 'failed', 'error', 'skipped', 'deselected'))]
  return {'exit_status': status, 'summary': summaries[-1] if summaries else 'no summary line',
          'command': command, 'status': 'ok' if status == 0 else f'failed (exit {status})'}


def _read(path: str) -> str:
  if not os.path.exists(path):
    return ''
  with open(path) as f:
    return f.read()


def rows(raw_dir: str) -> list[dict]:
  """One row per planned cell (raw_dir/plan.tsv: group, model, method, config, dtype), measured
  (raw_dir/GROUP.json, benchmark.py's --json_out) or not (then `status`: raw_dir/GROUP.status)."""
  table, results = [], {}
  for line in _read(os.path.join(raw_dir, 'plan.tsv')).splitlines():
    group, model, method, spec, dtype = line.split('\t')
    if group not in results:
      text = _read(os.path.join(raw_dir, f'{group}.json'))
      results[group] = {r['name']: r for r in (json.loads(text) if text else [])}
    row = {'model': model, 'method': method, 'config': os.path.basename(spec), 'dtype': dtype,
           'group': group}
    measured = results[group].get(config_name(spec))
    if measured is None:
      row['status'] = _read(os.path.join(raw_dir, f'{group}.status')).strip() or 'not measured'
    else:
      row.update(
          status='ok', batch=measured['global_batch'], modality=measured.get('modality', 'image'),
          step_s=measured['robust_jax_step_s'], examples_per_s=measured['robust_jax_images_per_s'],
          hand_written_examples_per_s=measured['hand_written_images_per_s'],
          over_hand_written=1 / measured['ratio_time_general_over_hand'],
          pytorch_examples_per_s=measured.get('pytorch_images_per_s'),
          over_pytorch=(1 / measured['ratio_time_general_over_pytorch']
                        if 'ratio_time_general_over_pytorch' in measured else None),
          pytorch=measured.get('pytorch'), rounds=measured['rounds'],
          steps_per_round=measured['steps_per_round'])
    table.append(row)
  return table


def gpu_hours(table: list[dict], variants=None) -> list[dict]:
  """Device-hours of each AMP-table row (ERM and AMP, SEEDS_PER_ROW seeds each): the recipe's
  steps (epochs × ⌈train examples / batch⌉) × the measured step of its model and method at the
  recipe's batch and dtype (measured on CIFAR-10 with that config's augmentation)."""
  from robust_jax.config import defaults  # pylint: disable=g-import-not-at-top
  from robust_jax.config.files import load_config_file  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = []
  for variant in variants or defaults.AMP_TABLE_VARIANTS:
    row = {'row': variant}
    for method in ('erm', 'amp'):
      config = load_config_file(os.path.join(root, 'configs', f'{method}.py:{variant}'))
      batch, dtype = config.train.batch_size, config.train.compute_dtype
      model = MODEL_LABELS[config.model.name]
      measured = next((r for r in table if r['status'] == 'ok' and r['model'] == model
                       and r['method'] == method.upper() and r['dtype'] == dtype
                       and r['batch'] == batch), None)
      steps = config.train.num_epochs * math.ceil(TRAIN_EXAMPLES[config.dataset.name] / batch)
      row[f'{method}_steps'] = steps
      row[f'{method}_hours'] = (None if measured is None
                                else SEEDS_PER_ROW * steps * measured['step_s'] / 3600)
    result.append(row)
  return result


def _number(value: float | None, digits: int = 0) -> str:
  return '—' if value is None else f'{value:,.{digits}f}'


def _step_table(table: list[dict]) -> list[str]:
  lines = ['| model | method | dtype | batch | examples/s | ÷ hand-written | ÷ PyTorch | '
           'PyTorch examples/s |', '|---|---|---|---|---|---|---|---|']
  for r in table:
    if r['status'] != 'ok':
      lines.append(f'| {r["model"]} | {r["method"]} | {r["dtype"]} | — | not measured: '
                   f'{r["status"]} | | | |')
      continue
    lines.append(f'| {r["model"]} | {r["method"]} | {r["dtype"]} | {r["batch"]} | '
                 f'{_number(r["examples_per_s"])} | {_number(r["over_hand_written"], 2)} | '
                 f'{_number(r["over_pytorch"], 2)} | {_number(r["pytorch_examples_per_s"])} |')
  return lines


def _end_to_end(parts: dict, overhead: dict) -> list[str]:
  fm, cifar = parts['fashion_mnist'], parts['cifar_mock']
  lines = ['## End to end on the device', '',
           f'Fashion-MNIST (`configs/fashion_mnist_cnn.py:quick`): {fm["status"]}']
  if 'killed_after_checkpoint' in fm:
    lines[-1] += (f'; SIGTERM after the checkpoint at step {fm["killed_after_checkpoint"]}, '
                  f'{fm["resumed"] or "not resumed"}; test accuracy '
                  f'{_number(fm.get("test_accuracy"), 4)} after {fm.get("steps", "—")} steps '
                  f'(floor {fm["accuracy_floor"]}).')
  if fm.get('robustness_table'):
    lines += ['', fm['robustness_table']]
  lines += ['', f'CIFAR-shaped mock run through AutoAugment and Cutout (`{cifar.get("config", "")}`, '
            f'{cifar.get("steps", "—")} steps): {cifar["status"]}'
            + (f', {cifar["seconds"]:.0f} s with compilation.' if 'seconds' in cifar else '.'), '',
            '## Host overhead per step', '']
  if overhead.get('status') == 'ok':
    lines.append(
        f'Default CNN, batch {overhead["batch"]}: the training loop takes '
        f'{1e3 * overhead["loop_step_s"]:.2f} ms per step (runs of {overhead["steps"][0]} and '
        f'{overhead["steps"][1]} steps), the compiled step {1e3 * overhead["compiled_step_s"]:.2f} '
        f'ms: overhead {1e3 * overhead["overhead_s"]:.2f} ms = '
        f'{100 * overhead["overhead_fraction"]:.0f} % of the step'
        + (' (more than 10 %: several steps per compiled call would pay).'
           if overhead['overhead_fraction'] > 0.1 else
           ' (negative: below this measurement\'s noise).' if overhead['overhead_fraction'] < 0
           else ' (at most 10 %).'))
  else:
    lines.append(f'Not measured: {overhead.get("status")}.')
  return lines


def _gpu_hours(rows_: list[dict]) -> list[str]:
  lines = ['## Device-hours per AMP-table row', '',
           f'ERM and AMP, {SEEDS_PER_ROW} seeds each: the recipe\'s steps × the measured step of '
           'its model at its batch and dtype (CIFAR-10 shapes; SVHN and CIFAR-100 rows use the same '
           'step).', '', '| row | ERM steps | ERM hours | AMP steps | AMP hours |',
           '|---|---|---|---|---|']
  for r in rows_:
    lines.append(f'| {r["row"]} | {r["erm_steps"]:,} | {_number(r["erm_hours"], 1)} | '
                 f'{r["amp_steps"]:,} | {_number(r["amp_hours"], 1)} |')
  return lines


def _targets(table: list[dict]) -> str:
  """Issue #24's targets (one H100, bfloat16, batch 512) against the PreActResNet-18 rows."""
  bf16 = [r for r in table if r['status'] == 'ok' and r['dtype'] == 'bfloat16'
          and r['model'] == 'PreActResNet-18' and r['batch'] == 512]
  parts = []
  for method, target in TARGET_IMAGES_PER_S.items():
    row = next((r for r in bf16 if r['method'] == method), None)
    if row:
      parts.append(f'{method} ≥ {target:,} images/s: '
                   f'{"met" if row["examples_per_s"] >= target else "missed"} '
                   f'({row["examples_per_s"]:,.0f})')
  ratios = [r for r in bf16 if r['over_pytorch'] is not None]
  if ratios:
    worst = min(ratios, key=lambda r: r['over_pytorch'])
    parts.append(f'each ≥ {TARGET_OVER_PYTORCH}× PyTorch: '
                 f'{"met" if worst["over_pytorch"] >= TARGET_OVER_PYTORCH else "missed"} '
                 f'(lowest: {worst["method"]} {worst["over_pytorch"]:.2f}×)')
  return ('Targets of issue #24 (one H100, bfloat16, PreActResNet-18, batch 512): '
          + '; '.join(parts) + '.') if parts else 'Targets of issue #24: no batch-512 bfloat16 row.'


def markdown(report: dict) -> str:
  """The md report: what ran where, the tests, end to end, overhead, steps, hours, targets."""
  env, tests, table = report['environment'], report['tests'], report['rows']
  versions = ', '.join(f'{name} {v}' for name, v in env['versions'].items())
  cuda = (f'; PyTorch CUDA {env["torch_cuda"]}, cuDNN {env["torch_cudnn"]}'
          if env.get('torch_cuda') else '')
  measured = [r for r in table if r['status'] == 'ok']
  pytorch = next((r['pytorch'] for r in measured if r['pytorch']), None)
  lines = [
      f'# Accelerator check: {env["device"]}', '',
      f'`{report["check_command"]}`, {env["date"]}: {env["device_count"]} × {env["device"]} '
      f'({env["backend"]}: {env["backend_version"]}), Python {env["python"]}; {versions}{cuda}. '
      f'{report["seconds"]:.0f} s of the {report["budget_s"]:g} s budget.', '',
      f'Tests on the device (`{tests["command"]}`): exit status {tests["exit_status"]}, '
      f'{tests["summary"]}.', '', *_end_to_end(report['end_to_end'], report['host_overhead']), '',
      '## Train steps', '',
      'Synthetic data of each config\'s shapes, its augmentation, the global batch as given; median '
      f'of {measured[0]["rounds"] if measured else "—"} rounds × '
      f'{measured[0]["steps_per_round"] if measured else "—"} steps after compilation '
      '(`experiments/benchmark.py`). ÷ hand-written and ÷ PyTorch: robust_jax\'s throughput over '
      'theirs (median of per-round ratios; > 1: robust_jax faster).', '', *_step_table(table), '']
  if pytorch:
    lines.append(f'PyTorch twin (`tests/oracles/torch_reference.py`): torch {pytorch["version"]} on '
                 f'{pytorch["device"]}, {"torch.compile" if pytorch["compile"] else "eager"}'
                 f'{", channels_last" if pytorch["channels_last"] else ""}, autocast in the '
                 'bfloat16 rows.')
  else:
    lines.append('No PyTorch column: torch is not installed here.')
  lines += ['', _targets(table), '', *_gpu_hours(report['gpu_hours'])]
  return '\n'.join(lines) + '\n'
