"""The robustness evaluation: exact ε parsing, worst case per example, sanity warnings, outputs."""
import os

import pytest

from robust_jax import config_defaults, robustness, train
from robust_jax.runs import load_run
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


def test_sanity_checks_flag_gradient_masking_signs():
  settings = _settings(epsilons=('0', '0.1', '0.2'))
  row = lambda clean, fgsm, pgd, ce, dlr: {'clean': clean, 'FGSM': fgsm, 'PGD-20': pgd,
                                           'APGD-CE-100': ce, 'APGD-DLR-100': dlr}
  healthy = {'0': row(.9, .9, .9, .9, .9), '0.1': row(.9, .5, .4, .38, .39),
             '0.2': row(.9, .2, .1, .05, .06)}
  assert robustness.sanity_warnings(_results(healthy), settings) == []
  masked = {'0': row(.9, .9, .8, .9, .9), '0.1': row(.9, .3, .6, .7, .7),
            '0.2': row(.9, .4, .5, .3, .3)}
  warnings = ' | '.join(robustness.sanity_warnings(_results(masked, large=0.5), settings))
  assert 'attacks at ε = 0 changed accuracy' in warnings
  assert 'PGD-20 accuracy 0.6000 exceeds FGSM 0.3000' in warnings
  assert 'APGD accuracy 0.7000 exceeds PGD-20' in warnings
  assert 'FGSM: accuracy rises from 0.3000 at ε=0.1 to 0.4000 at ε=0.2' in warnings
  assert 'at the large ε=0.5 is above chance' in warnings


def test_evaluate_on_a_trained_tiny_model(tiny_npz, tmp_path, eight_devices):
  config = helpers.tiny_config(tiny_npz, num_epochs=3)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir, devices=eight_devices[:1])
  config, model, params, model_state, splits, mesh = load_run(workdir, devices=eight_devices[:2])
  settings = _settings(epsilons=('0', '1/10', '0.3'), pgd_steps=5, apgd_steps=5, batch_size=32)
  results = robustness.evaluate(model, params, model_state, splits.test, settings, mesh)
  accuracy = results['accuracy']
  assert list(accuracy) == ['0', '1/10', '0.3']  # ε reported exactly as given
  assert list(accuracy['0']) == ['clean', 'FGSM', 'PGD-20'.replace('20', '5'), 'APGD-CE-5',
                                 'APGD-DLR-5', robustness.WORST_CASE]
  for row in accuracy.values():
    assert row[robustness.WORST_CASE] <= min(v for k, v in row.items()
                                             if k != robustness.WORST_CASE)
  assert all(v == accuracy['0']['clean'] for v in accuracy['0'].values())
  assert accuracy['0.3'][robustness.WORST_CASE] < accuracy['0']['clean']
  table = robustness.markdown_table(results)
  assert '| 1/10 |' in table and 'on 64 test examples' in table
  robustness.plot(results, str(tmp_path / 'plot.png'))
  assert os.path.getsize(tmp_path / 'plot.png') > 10_000
