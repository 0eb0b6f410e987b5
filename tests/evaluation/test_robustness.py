"""The robustness evaluation: exact ε parsing, worst case per example, sanity warnings, outputs."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from robust_jax import attacks, json_utils
from robust_jax.config import defaults as config_defaults
from robust_jax.evaluation import robustness
from robust_jax.training import loop as train
from robust_jax.training.runs import load_run
from tests import helpers


def test_epsilons_are_parsed_exactly():
  assert robustness.parse_epsilon('8/255') == 8 / 255
  assert robustness.parse_epsilon('0.1') == 0.1
  with pytest.raises(ValueError):
    robustness.parse_epsilon('eight')


def _settings(**overrides):
  settings = config_defaults.default_config().robustness
  settings.update(overrides)
  return settings


def _results(accuracy, large=0.0):
  return {'accuracy': accuracy, 'num_examples': 10000, 'large_epsilon': '0.5',
          'large_epsilon_accuracy': large, 'num_classes': 10}


def _strict_json(path):
  """Parses `path` refusing the NaN / Infinity tokens that are not JSON."""
  def refuse(token):
    raise ValueError(f'{token} is not JSON')
  with open(path) as f:
    return json.load(f, parse_constant=refuse)


def test_sanity_checks_flag_gradient_masking_signs():
  settings = _settings(epsilons=('0', '0.1', '0.2'))
  row = lambda clean, fgsm, pgd, ce, dlr: {'clean': clean, 'FGSM': fgsm, 'PGD-20': pgd,
                                           'APGD-CE-100': ce, 'APGD-DLR-100': dlr}
  healthy = {'0': row(.9, .9, .9, .9, .9), '0.1': row(.9, .5, .4, .38, .39),
             '0.2': row(.9, .2, .1, .05, .06)}
  checks, warnings = robustness.sanity_checks(_results(healthy), settings)
  assert warnings == [] and len(checks) == 5
  masked = {'0': row(.9, .9, .8, .9, .9), '0.1': row(.9, .3, .6, .7, .7),
            '0.2': row(.9, .4, .5, .3, .3)}
  warnings = ' | '.join(robustness.sanity_checks(_results(masked, large=0.5), settings)[1])
  assert 'attacks at ε = 0 changed accuracy' in warnings
  assert 'PGD-20 accuracy 0.6000 exceeds FGSM 0.3000' in warnings
  assert 'APGD accuracy 0.7000 exceeds PGD-20' in warnings
  assert 'FGSM: accuracy rises from 0.3000 at ε=0.1 to 0.4000 at ε=0.2' in warnings
  assert 'at the large ε=0.5 is above chance' in warnings


def test_sanity_checks_name_only_the_attacks_that_ran():
  settings = _settings(epsilons=('0.1', '0.2'), attacks=('fgsm',))
  accuracy = {'0.1': {'clean': .9, 'FGSM': .5}, '0.2': {'clean': .9, 'FGSM': .3}}
  results = _results(accuracy)
  results['sanity_checks'], results['warnings'] = robustness.sanity_checks(results, settings)
  assert results['sanity_checks'] == ['accuracy does not rise with ε', 'large ε=0.5 → below chance']
  assert robustness.sanity_report(results) == [
      'All 2 sanity checks made passed: accuracy does not rise with ε; large ε=0.5 → below chance.']
  results['warnings'] = ['FGSM: accuracy rises']
  assert robustness.sanity_report(results) == [
      'WARNING (sanity check failed): FGSM: accuracy rises']


@pytest.mark.parametrize('num_examples,batch_size,devices,expected', [
    (200, 500, 8, 200),  # one batch, no padding (the old code padded to 504)
    (1000, 300, 8, 256),  # 4 batches of 256: 24 padding rows, not 216
    (10000, 500, 8, 504),
    (64, 32, 2, 32),
    (5, 500, 8, 8),
])
def test_eval_batch_size_fits_the_examples(num_examples, batch_size, devices, expected):
  assert robustness.eval_batch_size(num_examples, batch_size, devices) == expected


def test_eval_batches_pad_less_than_one_device_row_per_batch():
  for num_examples in range(1, 300, 7):
    for batch_size in (1, 8, 50, 128, 500):
      batch = robustness.eval_batch_size(num_examples, batch_size, 8)
      num_batches = math.ceil(num_examples / batch)
      assert batch % 8 == 0 and batch <= math.ceil(batch_size / 8) * 8
      assert num_batches * batch - num_examples < 8 * num_batches


def test_json_dump_writes_non_finite_floats_as_null(tmp_path):
  path = str(tmp_path / 'r.json')
  json_utils.dump({'loss': float('nan'), 'rows': [float('inf'), 0.5], 'pair': (-math.inf, 1),
                   'numpy': np.float64('nan'), 'text': 'nan'}, path)
  assert _strict_json(path) == {'loss': None, 'rows': [None, 0.5], 'pair': [None, 1],
                                'numpy': None, 'text': 'nan'}


@pytest.fixture(scope='module')
def trained_workdir(tiny_npz, tmp_path_factory, eight_devices):
  config = helpers.tiny_config(tiny_npz, num_epochs=3)
  workdir = str(tmp_path_factory.mktemp('robustness') / 'run')
  train.train_and_evaluate(config, workdir, devices=eight_devices[:1])
  return workdir


def test_evaluate_on_a_trained_tiny_model(trained_workdir, tmp_path, eight_devices):
  config, model, params, model_state, splits, mesh = load_run(trained_workdir,
                                                              devices=eight_devices[:2])
  settings = _settings(epsilons=('0', '1/10', '0.3'), pgd_steps=5, apgd_steps=5, batch_size=32)
  results = robustness.evaluate(model, params, model_state, splits.test, settings, mesh,
                                checkpoint_step=12)
  accuracy = results['accuracy']
  assert list(accuracy) == ['0', '1/10', '0.3']  # ε reported exactly as given
  assert list(accuracy['0']) == ['clean', 'FGSM', 'PGD-20'.replace('20', '5'), 'APGD-CE-5',
                                 'APGD-DLR-5', robustness.WORST_CASE]
  for row in accuracy.values():
    assert row[robustness.WORST_CASE] <= min(v for k, v in row.items()
                                             if k != robustness.WORST_CASE)
  assert all(v == accuracy['0']['clean'] for v in accuracy['0'].values())
  assert accuracy['0.3'][robustness.WORST_CASE] < accuracy['0']['clean']
  assert results['batch_size'] == 32 and results['checkpoint_step'] == 12
  assert results['attacks']['PGD-5'] == dict(
      attack='pgd', loss='ce', num_steps=5, step_size='0.25 × ε', restarts=1, random_start=True,
      seed=0, norm='linf', model_mode='eval')
  assert results['attacks']['APGD-DLR-5']['seed'] == 0 and len(results['attacks']) == 4
  assert len(results['sanity_checks']) == 5
  table = robustness.markdown_table(results)
  assert '| 1/10 |' in table
  assert 'on 64 test examples at checkpoint step 12, seed 0, linf, model in eval mode;' in table
  assert 'PGD-5: loss=ce, num_steps=5, step_size=0.25 × ε, restarts=1, random_start=True' in table
  robustness.plot(results, str(tmp_path / 'plot.png'))
  assert os.path.getsize(tmp_path / 'plot.png') > 10_000
  with Image.open(tmp_path / 'plot.png') as image:
    assert image.text['Description'] == robustness.describe(results)
  json_utils.dump(results, str(tmp_path / 'robustness.json'))
  assert _strict_json(tmp_path / 'robustness.json')['accuracy'] == results['accuracy']


def test_evaluate_command_with_fgsm_only(trained_workdir, tmp_path):
  """`evaluate --attacks=fgsm` on 20 examples: one batch of 24 (8 devices), the newest checkpoint's
  step recorded, and only FGSM's sanity checks made."""
  output_dir = str(tmp_path / 'out')
  run = subprocess.run(
      [sys.executable, '-m', 'robust_jax.evaluate', f'--workdir={trained_workdir}',
       '--attacks=fgsm', '--epsilons=0,0.2', '--num_examples=20', f'--output_dir={output_dir}'],
      capture_output=True, text=True, timeout=120, check=True)
  results = _strict_json(os.path.join(output_dir, 'robustness.json'))
  assert results['num_examples'] == 20 and results['batch_size'] == 24
  assert results['checkpoint_step'] == 24  # 3 epochs of 256 // 32 steps
  assert list(results['attacks']) == ['FGSM']
  assert results['sanity_checks'] == ['ε = 0 gives clean accuracy', 'accuracy does not rise with ε',
                                      'large ε=0.5 → below chance']
  assert robustness.sanity_report(results)[0] in run.stdout
  assert 'PGD' not in run.stdout and 'APGD' not in run.stdout


def test_evaluate_autoattack_preset_on_a_trained_tiny_model(trained_workdir, tmp_path,
                                                             eight_devices):
  """The preset's columns, each attack's seconds, the masking flags and the outputs, on 16
  examples sharded over 2 devices with tiny AutoAttack budgets."""
  config, model, params, model_state, splits, mesh = load_run(trained_workdir,
                                                              devices=eight_devices[:2])
  settings = _settings(epsilons=('0', '0.3'), pgd_steps=3, num_examples=16, batch_size=16)
  tiny = attacks.AutoAttackSettings(apgd_steps=3, num_target_classes=2, fab_steps=3,
                                    square_queries=8)
  results = robustness.evaluate_autoattack(model, params, model_state, splits.test, settings,
                                           mesh, autoattack_settings=tiny, checkpoint_step=24)
  sequence = ['APGD-CE', 'APGD-T', 'FAB-T', 'Square']
  accuracy = results['accuracy']
  assert list(accuracy['0']) == ['clean', 'FGSM', 'PGD-3', *sequence, robustness.WORST_CASE]
  assert all(v == accuracy['0']['clean'] for v in accuracy['0'].values())
  row = accuracy['0.3']
  after = [row['clean']] + [row[name] for name in sequence]
  assert after == sorted(after, reverse=True)  # cumulative: never rises along the sequence
  assert row[robustness.WORST_CASE] == min(row.values()) < row['clean']
  assert list(results['seconds']['0.3']) == ['FGSM', 'PGD-3', *sequence]
  assert all(s >= 0 for s in results['seconds']['0.3'].values())
  assert results['autoattack'] == {'version': 'standard', 'sequence': sequence}
  assert results['attacks']['AutoAttack']['square_queries'] == 8
  assert results['num_examples'] == 16 and results['large_epsilon_examples'] == 16
  assert set(results['gradient_masking']) == {'square_breaks_gradient_robust',
                                              'fgsm_stronger_than_pgd',
                                              'large_epsilon_not_near_zero'}
  assert 'Square breaks ≤ 1 % after the gradient attacks' in results['sanity_checks']
  table = robustness.markdown_table(results)
  assert '| 0.3 |' in table and 'Seconds per attack' in table
  assert robustness.gradient_masking_report(results) in table
  robustness.plot(results, str(tmp_path / 'plot.png'))
  json_utils.dump(results, str(tmp_path / 'robustness.json'))
  assert _strict_json(tmp_path / 'robustness.json')['accuracy'] == accuracy


@pytest.mark.parametrize('flags,error', [
    (['--preset=autoatack'], "error: --preset='autoatack': must be one of 'autoattack', "
                             "'autoattack_rand'"),
    (['--preset=autoattack', '--autoattack_settings=apgd_step=3'],
     "error: --autoattack_settings='apgd_step=3': unknown key 'apgd_step'; known keys: "
     "apgd_steps, apgd_restarts, num_target_classes, fab_steps, fab_restarts, square_queries, "
     "eot_samples"),
])
def test_evaluate_command_refuses_a_bad_preset_in_one_line(tmp_path, flags, error):
  run = subprocess.run([sys.executable, '-m', 'robust_jax.evaluate',
                        f'--workdir={tmp_path}', *flags], capture_output=True, text=True,
                       timeout=120)
  assert run.returncode != 0 and run.stderr.strip().splitlines() == [error]
