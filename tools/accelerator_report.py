r"""The environment and the result table of the accelerator check (`accelerator_check.sh`).

    python tools/accelerator_report.py --environment --out_dir=DIR
        prints the device and the versions, writes DIR/environment.json
    python tools/accelerator_report.py --raw_dir=RAW --out_dir=DIR [--check_command=...]
        writes DIR/accelerator.json and DIR/accelerator.md from DIR/environment.json, DIR/tests.log
        and RAW: plan.tsv (one line per planned measurement: group, method, config, dtype, batch,
        augmentation 'default' / 'none'), GROUP.json or else GROUP.log (what `benchmark.py` wrote:
        its JSON, or the JSON line it prints per config measured), GROUP.status (why a group has no
        results) and tests.status (pytest's exit status)

Columns: images/s of robust_jax's step; "÷ hand-written" = robust_jax's throughput / the
hand-written JAX step's, "÷ PyTorch" = robust_jax's throughput / the PyTorch twin's (each the
inverse of benchmark.py's paired time ratio, the median of per-round ratios: > 1 means robust_jax
is faster).
"""
from __future__ import annotations

import csv
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from robust_jax.config.files import config_name  # noqa: E402

_ENVIRONMENT = flags.DEFINE_bool('environment', False,
                                 'Print the device and versions and write environment.json.')
_OUT_DIR = flags.DEFINE_string('out_dir', None, 'Folder of the check\'s outputs.')
_RAW_DIR = flags.DEFINE_string('raw_dir', '', 'Folder of the raw benchmark outputs.')
_CHECK_COMMAND = flags.DEFINE_string('check_command', 'bash tools/accelerator_check.sh',
                                     'The command that ran the check (quoted in the md).')

PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'chex', 'numpy', 'ml-collections',
            'torch')
# The targets for one H100 in bfloat16 (issue #11 item 5): images/s, and the throughput
# ratio to the PyTorch twin.
TARGET_IMAGES_PER_S = {'ERM': 50_000, 'PGD-10 AT': 6_000}
TARGET_OVER_PYTORCH = 1.5


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


def _read(path: str, default: str = '') -> str:
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return f.read()


def _group_results(raw_dir: str, group: str) -> list[dict]:
  """benchmark.py's results of one group: its --json_out file, else the JSON lines it printed
  before it stopped (a group stopped at the time budget writes no file)."""
  text = _read(os.path.join(raw_dir, f'{group}.json'))
  if text:
    return json.loads(text)
  results = []
  for line in _read(os.path.join(raw_dir, f'{group}.log')).splitlines():
    if line.startswith('{'):
      try:
        results.append(json.loads(line))
      except ValueError:
        continue
  return [r for r in results if 'robust_jax_step_s' in r]


def rows(raw_dir: str) -> list[dict]:
  """One row per planned measurement, measured or not (then `status` says why)."""
  with open(os.path.join(raw_dir, 'plan.tsv')) as f:
    plan = list(csv.reader(f, delimiter='\t'))
  results = {}
  table = []
  for group, method, spec, dtype, batch, augmentation in plan:
    if group not in results:
      results[group] = {r['name']: r for r in _group_results(raw_dir, group)}
    row = {'method': method, 'config': spec, 'dtype': dtype, 'batch': int(batch),
           'augmentation': augmentation, 'group': group}
    measured = results[group].get(config_name(spec))
    if measured is None:
      row['status'] = (_read(os.path.join(raw_dir, f'{group}.status')).strip()
                       or 'not measured')
    else:
      row.update(
          status='ok', model=measured['config']['model'],
          images_per_s=measured['robust_jax_images_per_s'],
          hand_written_images_per_s=measured['hand_written_images_per_s'],
          over_hand_written=1 / measured['ratio_time_general_over_hand'],
          pytorch_images_per_s=measured.get('pytorch_images_per_s'),
          over_pytorch=(1 / measured['ratio_time_general_over_pytorch']
                        if 'ratio_time_general_over_pytorch' in measured else None),
          pytorch=measured.get('pytorch'), rounds=measured['rounds'],
          steps_per_round=measured['steps_per_round'])
    table.append(row)
  return table


def _tests(out_dir: str, raw_dir: str) -> dict:
  """pytest's exit status and its summary line ('12 passed, 1 skipped in 30.1s')."""
  lines = [line.strip('= ') for line in _read(os.path.join(out_dir, 'tests.log')).splitlines()]
  summaries = [line for line in lines if ' in ' in line and any(
      word in line for word in ('passed', 'failed', 'error', 'skipped', 'deselected'))]
  status = _read(os.path.join(raw_dir, 'tests.status'), 'not run').strip()
  return {'exit_status': status, 'summary': summaries[-1] if summaries else 'no summary line',
          'command': _read(os.path.join(raw_dir, 'tests.command')).strip()}


def _number(value: float | None, digits: int = 0) -> str:
  return '—' if value is None else f'{value:,.{digits}f}'


def markdown(env: dict, tests: dict, table: list[dict], check_command: str) -> str:
  """The md report: what ran where, the tests' outcome, the table, and the issue's targets."""
  versions = ', '.join(f'{name} {v}' for name, v in env['versions'].items())
  cuda = (f'; PyTorch CUDA {env["torch_cuda"]}, cuDNN {env["torch_cudnn"]}'
          if env.get('torch_cuda') else '')
  measured = [r for r in table if r['status'] == 'ok']
  models = sorted({r['model'] for r in measured}) or ['—']
  pytorch = next((r['pytorch'] for r in measured if r['pytorch']), None)
  lines = [
      f'# Accelerator check: {env["device"]}', '',
      f'`{check_command}`, {env["date"]}: {env["device_count"]} × {env["device"]} '
      f'({env["backend"]}: {env["backend_version"]}), Python {env["python"]}; {versions}{cuda}.',
      '',
      f'Tests, fast subset on the device (`{tests["command"]}`): exit status '
      f'{tests["exit_status"]}, {tests["summary"]}.', '',
      f'Train step of model {", ".join(models)} on CIFAR-10-shaped synthetic data (32×32×3, '
      f'10 classes), global batch as given, median of '
      f'{measured[0]["rounds"] if measured else "—"} rounds × '
      f'{measured[0]["steps_per_round"] if measured else "—"} steps after compilation '
      '(`experiments/benchmark.py`). ÷ hand-written and ÷ PyTorch: robust_jax\'s throughput over '
      "theirs (median of per-round ratios; > 1: robust_jax faster).", '',
      '| method | dtype | batch | augmentation | images/s | ÷ hand-written | ÷ PyTorch | '
      'PyTorch images/s |',
      '|---|---|---|---|---|---|---|---|']
  for r in table:
    if r['status'] != 'ok':
      lines.append(f'| {r["method"]} | {r["dtype"]} | {r["batch"]} | {r["augmentation"]} | '
                   f'not measured: {r["status"]} | | | |')
      continue
    lines.append(f'| {r["method"]} | {r["dtype"]} | {r["batch"]} | {r["augmentation"]} | '
                 f'{_number(r["images_per_s"])} | {_number(r["over_hand_written"], 2)} | '
                 f'{_number(r["over_pytorch"], 2)} | {_number(r["pytorch_images_per_s"])} |')
  lines.append('')
  if pytorch:
    lines.append(f'PyTorch twin (`tests/oracles/torch_reference.py`): torch {pytorch["version"]} on '
                 f'{pytorch["device"]}, {"torch.compile" if pytorch["compile"] else "eager"}'
                 f'{", channels_last" if pytorch["channels_last"] else ""}, autocast in the '
                 'bfloat16 rows; twins exist for ERM, FGSM-AT, PGD-AT and AMP.')
  else:
    lines.append('No PyTorch column: torch is not installed here.')
  lines += ['', _targets(table)]
  return '\n'.join(lines) + '\n'


def _targets(table: list[dict]) -> str:
  """The issue's targets (one H100, bfloat16, default augmentation) against the bf16 rows."""
  bf16 = [r for r in table if r['status'] == 'ok' and r['dtype'] == 'bfloat16'
          and r['augmentation'] == 'default']
  parts = []
  for method, target in TARGET_IMAGES_PER_S.items():
    row = next((r for r in bf16 if r['method'] == method), None)
    if row:
      parts.append(f'{method} ≥ {target:,} images/s: '
                   f'{"met" if row["images_per_s"] >= target else "missed"} '
                   f'({row["images_per_s"]:,.0f})')
  ratios = [r for r in bf16 if r['over_pytorch'] is not None]
  if ratios:
    worst = min(ratios, key=lambda r: r['over_pytorch'])
    parts.append(f'every method ≥ {TARGET_OVER_PYTORCH}× PyTorch: '
                 f'{"met" if worst["over_pytorch"] >= TARGET_OVER_PYTORCH else "missed"} '
                 f'(lowest: {worst["method"]} {worst["over_pytorch"]:.2f}×)')
  return ('Targets of issue #11 (one H100, bfloat16): ' + '; '.join(parts) + '.') if parts else (
      'Targets of issue #11: no bfloat16 row measured.')


def main(argv):
  del argv
  out_dir = _OUT_DIR.value
  if not out_dir:
    raise app.UsageError('--out_dir: required, the folder of the check\'s outputs')
  os.makedirs(out_dir, exist_ok=True)
  if _ENVIRONMENT.value:
    env = environment()
    print(json.dumps(env, indent=2), flush=True)
    with open(os.path.join(out_dir, 'environment.json'), 'w') as f:
      json.dump(env, f, indent=2)
    return
  if not _RAW_DIR.value:
    raise app.UsageError('--raw_dir: required without --environment, the benchmark outputs')
  with open(os.path.join(out_dir, 'environment.json')) as f:
    env = json.load(f)
  tests, table = _tests(out_dir, _RAW_DIR.value), rows(_RAW_DIR.value)
  with open(os.path.join(out_dir, 'accelerator.json'), 'w') as f:
    json.dump({'environment': env, 'tests': tests, 'check_command': _CHECK_COMMAND.value,
               'rows': table}, f, indent=2)
  report = markdown(env, tests, table, _CHECK_COMMAND.value)
  with open(os.path.join(out_dir, 'accelerator.md'), 'w') as f:
    f.write(report)
  print(report)


if __name__ == '__main__':
  app.run(main)
