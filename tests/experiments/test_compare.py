"""experiments/compare.py's table from hand-made run records (`--table_only`: nothing trains)."""
import json
import os
import subprocess
import sys

import pytest
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
SPECS = 'configs/erm.py:fashion_mnist,configs/amp.py:fashion_mnist'


def _record(config, seed, clean, pgd, autoattack):
  return {'config': config, 'seed': seed, 'epochs': 1.0, 'clean': clean, 'clean_best': clean,
          'fgsm': pgd + 0.1, 'pgd': pgd, 'train_seconds': 100.0 + seed, 'attack_examples': 1000,
          'epsilon': '0.1', 'pgd_steps': 20, 'warnings': [], 'autoattack': autoattack}


def _table(tmp_path, records, *flags):
  for record in records:
    folder = tmp_path / record['config'] / f'seed{record["seed"]}'
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'compare.json').write_text(json.dumps(record))
  subprocess.run([sys.executable, 'experiments/compare.py', f'--output_dir={tmp_path}',
                  f'--configs={SPECS}', '--seeds=0,1', '--table_only', *flags], cwd=ROOT,
                 check=True, capture_output=True, text=True)
  return (tmp_path / 'table.md').read_text().splitlines()


def test_autoattack_column_over_the_seeds_that_have_it(tmp_path):
  lines = _table(tmp_path, [
      _record('erm_fashion_mnist', 0, 0.90, 0.10, 0.06),
      _record('erm_fashion_mnist', 1, 0.88, 0.14, 0.08),
      _record('amp_fashion_mnist', 0, 0.86, 0.25, 0.20),
      _record('amp_fashion_mnist', 1, 0.85, 0.27, None)], '--autoattack')
  assert lines[0].split(' | ')[5:8] == ['FGSM ε=0.1', 'PGD-20 ε=0.1', 'AutoAttack ε=0.1']
  erm, amp = lines[2].split(' | '), lines[3].split(' | ')
  assert erm[0] == '| erm_fashion_mnist' and erm[6:8] == ['12.00 ± 2.83', '7.00 ± 1.41']
  assert amp[6:8] == ['26.00 ± 1.41', '20.00 (1 of 2 seeds)']  # seed 1 has no AutoAttack
  assert os.path.getsize(tmp_path / 'accuracy.png') > 1000
  assert (tmp_path / 'runs.csv').read_text().splitlines()[0].split(',')[-1] == 'autoattack'


def test_no_autoattack_column_when_no_run_has_it(tmp_path):
  lines = _table(tmp_path, [_record('erm_fashion_mnist', seed, 0.9, 0.1, None) for seed in (0, 1)])
  assert 'AutoAttack' not in lines[0] and lines[0].count(' | ') == 7
  assert lines[2].split(' | ')[6] == '10.00 ± 0.00'


def test_a_record_made_with_other_attack_settings_is_refused(tmp_path):
  stale = dict(_record('erm_fashion_mnist', 0, 0.9, 0.1, None), pgd_steps=10)
  with pytest.raises(subprocess.CalledProcessError) as error:
    _table(tmp_path, [stale])
  assert 'was made with other settings' in error.value.stderr and "'pgd_steps': (10, 20)" in (
      error.value.stderr)


def test_a_record_made_with_other_overrides_is_refused(tmp_path):
  made_with = dict(_record('erm_fashion_mnist', 0, 0.9, 0.1, None),
                   overrides=['dataset.max_length=136'])
  lines = _table(tmp_path, [made_with], '--set=dataset.max_length=136')
  assert lines[2].startswith('| erm_fashion_mnist | 1 |')
  assert 'Config overrides: `dataset.max_length=136`' in '\n'.join(lines)
  with pytest.raises(subprocess.CalledProcessError) as error:
    _table(tmp_path, [made_with])  # no --set: the record was made with one
  assert "'overrides': (['dataset.max_length=136'], [])" in error.value.stderr
  assert "rerun with --set='dataset.max_length=136'" in error.value.stderr
  made_without = _record('erm_fashion_mnist', 0, 0.9, 0.1, None)  # records before --set
  with pytest.raises(subprocess.CalledProcessError) as error:
    _table(tmp_path, [made_without], '--set=dataset.max_length=136')
  assert "'overrides': ([], ['dataset.max_length=136'])" in error.value.stderr


@pytest.mark.parametrize('override', ['seed=3', 'robustness.epsilons=(0.2,)',
                                      'train.num_epochs=2'])
def test_set_refuses_keys_that_flags_set(tmp_path, override):
  with pytest.raises(subprocess.CalledProcessError) as error:
    _table(tmp_path, [_record('erm_fashion_mnist', 0, 0.9, 0.1, None)], f'--set={override}')
  assert f'--set={override}: compare.py sets' in error.value.stderr


def test_text_only_table_has_no_attack_columns(tmp_path):
  records = [dict(_record(f'text_{name}', seed, clean, 0.0, None), fgsm=None, pgd=None,
                  attack_examples=None, epsilon=None, pgd_steps=None)
             for name, clean in (('erm', 0.80), ('fgm', 0.75)) for seed in (0, 1)]
  specs = '--configs=configs/text.py:erm,configs/text.py:fgm'  # names only: --table_only
  lines = _table(tmp_path, records, specs)
  assert lines[0] == ('| config | seeds | epochs | clean, last | clean, best evaluation | '
                      'train time per run (s) |')
  assert lines[2].split(' | ')[3] == '80.00 ± 0.00' and 'no attacks (text data' in lines[5]


def test_runs_with_a_validation_split_add_pgd_at_their_selected_checkpoint(tmp_path):
  records = [dict(_record('erm_fashion_mnist', seed, 0.9, 0.1, None), pgd_selected=0.2 + seed / 10,
                  selected_step=100) for seed in (0, 1)]
  records += [_record('amp_fashion_mnist', seed, 0.9, 0.3, None) for seed in (0, 1)]
  lines = _table(tmp_path, records)
  assert lines[0].split(' | ')[5:8] == ['FGSM ε=0.1', 'PGD-20 ε=0.1',
                                        'PGD-20 at the selected checkpoint ε=0.1']
  assert lines[2].split(' | ')[6:8] == ['10.00 ± 0.00', '25.00 ± 7.07']  # last vs selected
  assert lines[3].split(' | ')[7] == '—'  # no validation split: nothing selected on it
  assert 'the checkpoint with the best validation metric' in '\n'.join(lines)


def test_seeds_as_replicas_tabulate_as_separate_runs(tmp_path, tiny_npz):
  """The same table from a config's seeds trained as replicas and one by one (on the tiny npz)."""
  tables = {}
  for replicas in ('true', 'false'):
    output = tmp_path / replicas
    subprocess.run([sys.executable, 'experiments/compare.py', f'--output_dir={output}',
                    '--configs=configs/erm.py:fashion_mnist', '--seeds=0,1', '--num_epochs=1',
                    '--attack_examples=16', f'--replicas={replicas}', '--pgd_steps=2',
                    f'--set=dataset.source=npz,dataset.path={tiny_npz},train.batch_size=64'],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    tables[replicas] = [line.split(' | ')[:7] for line in
                        (output / 'table.md').read_text().splitlines()[:3]]
  assert (tmp_path / 'true/erm_fashion_mnist/replicas/seed1/compare.json').exists()
  assert (tmp_path / 'false/erm_fashion_mnist/seed1/compare.json').exists()
  assert tables['true'] == tables['false']  # clean, best, FGSM and PGD: mean ± std of 2 seeds
