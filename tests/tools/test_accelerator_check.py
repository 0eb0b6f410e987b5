"""The accelerator check: `tools/accelerator_check.py --tiny` runs its whole path on the CPU
(environment, a test, Fashion-MNIST trained, killed, resumed and evaluated, a CIFAR-shaped run
through AutoAugment and Cutout, the host overhead, every method's train step of the small CNN in
both dtypes, the GPU-hours and the report); the report keeps planned rows that were never measured,
with the reason."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.test_preemption import REPO, subprocess_env
from tools import accelerator_report


@pytest.mark.long
def test_tiny_check_runs_end_to_end_on_cpu(tmp_path):
  out = tmp_path / 'out'
  completed = subprocess.run([sys.executable, 'tools/accelerator_check.py', '--tiny',
                              f'--out_dir={out}'], cwd=REPO, env=subprocess_env(),
                             capture_output=True, text=True, timeout=900, check=False)
  assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
  report = json.loads((out / 'accelerator.json').read_text())
  assert report['environment']['backend'] == 'cpu'
  assert report['tests']['exit_status'] == 0 and ' passed' in report['tests']['summary']
  fashion = report['end_to_end']['fashion_mnist']
  assert fashion['status'] == 'ok' and fashion['killed_after_checkpoint'] == 20, fashion
  resumed_step = int(fashion['resumed'].split('step ')[1].split()[0])
  assert 20 <= resumed_step < 120 and fashion['steps'] == 120  # killed, resumed, finished
  assert fashion['test_accuracy'] >= 0.6 and '| 0.1 |' in fashion['robustness_table']
  assert report['end_to_end']['cifar_mock']['status'] == 'ok'
  overhead = report['host_overhead']
  assert overhead['status'] == 'ok' and overhead['compiled_step_s'] > 0
  cells = [(r['method'], r['dtype']) for r in report['rows']]
  assert cells == [('ERM', 'float32'), ('AMP', 'float32'), ('ERM', 'bfloat16')]  # AMP: float32
  for row in report['rows']:
    assert row['status'] == 'ok' and row['model'] == 'CNN' and row['batch'] == 8, row
    assert row['examples_per_s'] > 0 and row['over_hand_written'] > 0
  assert len(report['gpu_hours']) == 15  # every AMP-table row, its steps counted
  markdown = (out / 'accelerator.md').read_text()
  assert '| CNN | AMP | float32 | 8 |' in markdown and '## Device-hours per AMP-table row' in markdown
  for name in ('environment.json', 'tests.log', 'benchmark.log', 'end_to_end.log'):
    assert (out / name).stat().st_size > 0


def _result(name, step_s, hand_s, pytorch_s=None, batch=512):
  """A benchmark.py result (the keys the report reads)."""
  result = {'name': name, 'global_batch': batch, 'rounds': 5, 'steps_per_round': 10,
            'robust_jax_images_per_s': batch / step_s, 'robust_jax_step_s': step_s,
            'hand_written_images_per_s': batch / hand_s,
            'ratio_time_general_over_hand': step_s / hand_s}
  if pytorch_s:
    result.update(pytorch_images_per_s=batch / pytorch_s, pytorch={
        'version': '2.11', 'device': 'cuda', 'compile': False, 'channels_last': True},
                  ratio_time_general_over_pytorch=step_s / pytorch_s)
  return result


def test_report_keeps_unmeasured_rows_and_judges_the_targets(tmp_path):
  raw = tmp_path / 'raw'
  raw.mkdir()
  (raw / 'plan.tsv').write_text(
      'targets\tPreActResNet-18\tERM\t/x/preactresnet18_erm_batch512.py\tbfloat16\n'
      'targets\tPreActResNet-18\tPGD-10 AT\t/x/preactresnet18_pgd10_at_batch512.py\tbfloat16\n'
      'late\tVGG-16\tMDL\t/x/vgg16_mdl.py\tfloat32\n')
  (raw / 'targets.json').write_text(json.dumps([
      _result('preactresnet18_erm_batch512', 0.008, 0.0075, pytorch_s=0.016),
      _result('preactresnet18_pgd10_at_batch512', 0.1, 0.1, pytorch_s=0.12)]))
  (raw / 'late.status').write_text('skipped, the time budget (--budget_s=480) was spent\n')
  table = accelerator_report.rows(str(raw))
  assert [r['status'] for r in table] == [
      'ok', 'ok', 'skipped, the time budget (--budget_s=480) was spent']
  assert table[0]['examples_per_s'] == 64_000 and table[0]['over_pytorch'] == 2.0
  assert abs(table[0]['over_hand_written'] - 0.9375) < 1e-12  # 7.5 ms / 8 ms
  assert ('ERM ≥ 50,000 images/s: met (64,000); PGD-10 AT ≥ 6,000 images/s: missed (5,120); '
          'each ≥ 1.5× PyTorch: missed (lowest: PGD-10 AT 1.20×)') in accelerator_report._targets(
              table)  # pylint: disable=protected-access
  step_table = '\n'.join(accelerator_report._step_table(table))  # pylint: disable=protected-access
  assert '| PreActResNet-18 | ERM | bfloat16 | 512 | 64,000 | 0.94 | 2.00 | 32,000 |' in step_table
  assert '| VGG-16 | MDL | float32 | — | not measured: skipped, the time budget' in step_table


def test_gpu_hours_are_the_recipe_steps_times_the_measured_step():
  # AMP's recipe on CIFAR-10 with PreActResNet-18: batch 50, 200 epochs, float32.
  measured = {'status': 'ok', 'model': 'PreActResNet-18', 'dtype': 'float32', 'batch': 50}
  table = [dict(measured, method='ERM', step_s=0.01), dict(measured, method='AMP', step_s=0.03),
           dict(measured, method='AMP', step_s=99.0, batch=512)]  # another batch: not this row's
  (row,) = accelerator_report.gpu_hours(table, variants=('cifar10_preact_resnet18',))
  assert row['erm_steps'] == row['amp_steps'] == 200 * 1000  # 200 epochs × 50,000 / 50
  assert abs(row['erm_hours'] - 3 * 200_000 * 0.01 / 3600) < 1e-9
  assert abs(row['amp_hours'] - 3 * 200_000 * 0.03 / 3600) < 1e-9
  (svhn,) = accelerator_report.gpu_hours(table, variants=('svhn_vgg16',))
  assert svhn['erm_steps'] == 200 * 1466 and svhn['erm_hours'] is None  # ⌈73,257 / 50⌉; no VGG
