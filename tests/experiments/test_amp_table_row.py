"""experiments/amp_table_row.py: one command per row of the AMP paper's tables."""
import json
import os

import pytest

from configs import amp as amp_configs
from experiments import amp_table_row
from robust_jax.config import defaults as config_defaults
from tests.helpers import REPO_ROOT


def test_every_row_has_its_published_numbers():
  assert set(amp_configs.PUBLISHED_TEST_ERROR) == set(config_defaults.AMP_TABLE_VARIANTS)
  for row, published in amp_configs.PUBLISHED_TEST_ERROR.items():
    assert published['amp'][0] < published['erm'][0], row  # AMP's gain, as published


def test_the_command_trains_the_rows_erm_and_amp_configs_for_each_seed():
  command = amp_table_row.compare_command('svhn_vgg16', 'out/svhn_vgg16', ['0', '1', '2'],
                                         'train.num_epochs=1', 500)
  assert command[1].endswith(os.path.join('experiments', 'compare.py'))
  assert command[2:] == ['--configs=configs/erm.py:svhn_vgg16,configs/amp.py:svhn_vgg16',
                         '--seeds=0,1,2', '--output_dir=out/svhn_vgg16', '--attack_examples=500',
                         '--epsilon=8/255', '--set=train.num_epochs=1']


def test_the_row_table_from_records_written_by_compare(tmp_path):
  row = 'cifar10_preact_resnet18'
  for method, seed, last, best in (('erm', 0, 0.95, 0.951), ('erm', 1, 0.94, 0.945),
                                   ('amp', 0, 0.96, 0.962)):
    folder = tmp_path / f'{method}_{row}' / f'seed{seed}'
    folder.mkdir(parents=True)
    (folder / 'compare.json').write_text(json.dumps(
        {'config': f'{method}_{row}', 'seed': seed, 'clean': last, 'clean_best': best}))
  table = amp_table_row.row_table(row, amp_table_row.read_records(str(tmp_path), row))
  assert table.splitlines()[2:] == [
      '| method | seeds | last epoch | best epoch | published |', '|---|---|---|---|---|',
      '| ERM | 0, 1 | 5.50 ± 0.50 | 5.20 ± 0.30 | 5.02 ± 0.21 |',
      '| AMP | 0 | 4.00 ± 0.00 | 3.80 ± 0.00 | 3.97 ± 0.09 |']
  assert '| AMP | 0 | — | — | 3.97 ± 0.09 |' in amp_table_row.row_table(row, {})


@pytest.mark.parametrize('row', config_defaults.AMP_TABLE_VARIANTS)
def test_the_row_names_configs_of_both_methods(row):
  from robust_jax.config.files import load_config_file
  root = REPO_ROOT
  erm = load_config_file(os.path.join(root, f'configs/erm.py:{row}'))
  amp = load_config_file(os.path.join(root, f'configs/amp.py:{row}'))
  assert erm.weight_perturbation.name == 'none' and amp.weight_perturbation.name == 'amp'
  assert erm.dataset == amp.dataset and erm.model == amp.model and erm.optimizer == amp.optimizer
