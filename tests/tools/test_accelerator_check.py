"""The accelerator check: `tools/accelerator_check.sh --tiny` runs its whole path on the CPU
(environment, a test, ERM train steps in bfloat16 and float32 and AMP in float32 against the
hand-written step and, where torch is installed, the PyTorch twin, the report); the report keeps
planned rows that were never measured, with the reason."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tools import accelerator_report
from tests.training.test_preemption import REPO, subprocess_env

HAS_TORCH = importlib.util.find_spec('torch') is not None


def test_tiny_check_runs_end_to_end_on_cpu(tmp_path):
  out = tmp_path / 'out'
  completed = subprocess.run(['bash', 'tools/accelerator_check.sh', '--tiny', str(out)],
                             cwd=REPO, env=subprocess_env(PYTHON=sys.executable),
                             capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
  report = json.loads((out / 'accelerator.json').read_text())
  assert report['environment']['backend'] == 'cpu'
  assert report['tests']['exit_status'] == '0' and ' passed' in report['tests']['summary']
  rows = report['rows']
  assert [(r['method'], r['dtype'], r['batch']) for r in rows] == [
      ('ERM', 'bfloat16', 8), ('ERM', 'float32', 8), ('AMP', 'float32', 8)]  # AMP: float32 only
  for row in rows:
    assert row['status'] == 'ok' and row['model'] == 'cnn', row
    assert row['images_per_s'] > 0 and row['over_hand_written'] > 0
    if HAS_TORCH:
      assert row['over_pytorch'] > 0
      assert row['pytorch']['autocast_dtype'] == (None if row['dtype'] == 'float32' else 'bfloat16')
  markdown = (out / 'accelerator.md').read_text()
  assert '| ERM | bfloat16 | 8 | default |' in markdown
  assert '| AMP | float32 | 8 | default |' in markdown
  for name in ('environment.json', 'tests.log', 'benchmark.log'):
    assert (out / name).stat().st_size > 0


def _result(name, step_s, hand_s, pytorch_s=None):
  """A benchmark.py result of batch 512 (the keys the report reads)."""
  result = {'name': name, 'config': {'model': 'preact_resnet18'}, 'rounds': 5,
            'steps_per_round': 10, 'robust_jax_images_per_s': 512 / step_s,
            'robust_jax_step_s': step_s, 'hand_written_images_per_s': 512 / hand_s,
            'ratio_time_general_over_hand': step_s / hand_s}
  if pytorch_s:
    result.update(pytorch_images_per_s=512 / pytorch_s, pytorch={'version': '2.11',
                  'device': 'cuda', 'compile': False, 'channels_last': True},
                  ratio_time_general_over_pytorch=step_s / pytorch_s)
  return result


def test_report_reads_json_or_printed_lines_and_keeps_unmeasured_rows(tmp_path):
  raw = tmp_path / 'raw'
  raw.mkdir()
  (raw / 'plan.tsv').write_text(
      'bf16\tERM\tconfigs/erm.py:cifar10_preact_resnet18\tbfloat16\t512\tdefault\n'
      'bf16\tPGD-10 AT\tconfigs/cifar_adversarial.py:cifar10_pgd\tbfloat16\t512\tdefault\n'
      'stopped\tTRADES\tconfigs/cifar_adversarial.py:cifar10_trades\tbfloat16\t512\tdefault\n'
      'late\tMDL\tconfigs/mdl.py:cifar10\tfloat32\t512\tdefault\n')
  erm = _result('erm_cifar10_preact_resnet18', 0.008, 0.0075, pytorch_s=0.016)
  pgd = _result('cifar_adversarial_cifar10_pgd', 0.1, 0.1, pytorch_s=0.12)
  (raw / 'bf16.json').write_text(json.dumps([erm, pgd]))
  # A group stopped at the budget has no JSON file: its printed lines count, the rest does not.
  (raw / 'stopped.log').write_text('compiling...\n{"not": "a result"}\n{"broken\n')
  (raw / 'stopped.status').write_text('stopped at the time budget (--budget_s=480)\n')
  (raw / 'late.status').write_text('skipped, the time budget (--budget_s=480) was spent\n')
  table = accelerator_report.rows(str(raw))
  assert [r['status'] for r in table] == [
      'ok', 'ok', 'stopped at the time budget (--budget_s=480)',
      'skipped, the time budget (--budget_s=480) was spent']
  assert table[0]['images_per_s'] == 64_000 and table[0]['over_pytorch'] == 2.0
  assert abs(table[0]['over_hand_written'] - 0.9375) < 1e-12  # 7.5 ms / 8 ms
  environment = {'device': 'NVIDIA H100', 'device_count': 1, 'backend': 'gpu',
                 'backend_version': 'cuda 13000', 'python': '3.12.3', 'date': 'today',
                 'versions': {'jax': '0.11.2'}}
  tests = {'exit_status': '0', 'summary': '3 passed in 1.0s', 'command': 'pytest'}
  markdown = accelerator_report.markdown(environment, tests, table, 'bash check.sh')
  assert '| ERM | bfloat16 | 512 | default | 64,000 | 0.94 | 2.00 | 32,000 |' in markdown
  assert '| MDL | float32 | 512 | default | not measured: skipped, the time budget' in markdown
  assert ('ERM ≥ 50,000 images/s: met (64,000); PGD-10 AT ≥ 6,000 images/s: missed (5,120); '
          'every method ≥ 1.5× PyTorch: missed (lowest: PGD-10 AT 1.20×)') in markdown
