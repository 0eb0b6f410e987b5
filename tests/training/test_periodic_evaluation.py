"""Robustness during training: a validation split held out of training, clean and robust accuracy
per evaluation, the best checkpoint by `train.select_by` kept in W/best and never pruned, resumed
selection, the learning-curve plot, and `evaluate --checkpoint=best`."""
import json
import os

import pytest

from robust_jax import evaluate
from robust_jax.config import validation
from robust_jax.config.files import load_config_file
from robust_jax.config.schema import ConfigError
from robust_jax.data.arrays import DatasetError
from robust_jax.training import checkpointing, loop as train, runs
from tests import helpers
from tests.helpers import REPO_ROOT


def _config(tiny_npz, **train_overrides):
  config = helpers.tiny_config(tiny_npz, num_epochs=3, **train_overrides)
  config.dataset.validation_examples = 64  # 256 - 64 = 192 training examples: 6 steps of 32
  config.eval.robust_examples = 16
  config.train.select_by = 'robust'
  config.robustness.update(pgd_steps=2, batch_size=8)
  return config


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_a_run_selects_its_best_robust_validation_step_and_keeps_it(tiny_npz, tmp_path):
  workdir = str(tmp_path / 'w')
  results = train.train_and_evaluate(_config(tiny_npz, max_checkpoints_to_keep=1), workdir)
  assert results['steps'] == 18 and results['num_validation_examples'] == 64  # 3 × 192 / 32
  logged = [(r['step'], r['validation/robust_accuracy']) for r in _metrics(workdir)
            if 'validation/robust_accuracy' in r]
  assert [step for step, _ in logged] == [6, 12, 18]
  best_step, best_value = max(logged, key=lambda e: e[1])  # the earliest of equal values
  assert results['selected'] == {'metric': 'validation/robust_accuracy', 'step': best_step,
                                 'value': best_value, 'checkpoint': f'best/{best_step}'}
  assert checkpointing.saved_steps(os.path.join(workdir, 'best')) == [best_step]  # not pruned
  assert checkpointing.saved_steps(os.path.join(workdir, 'checkpoints')) == [18]
  every = {key for r in _metrics(workdir) for key in r}
  assert {'validation/accuracy', 'validation/loss', 'test/robust_accuracy'} <= every
  assert 0 <= results['validation_robust_accuracy'] <= results['validation_accuracy'] + 1e-6
  assert results['evaluation_seconds'] > 0
  assert os.path.getsize(os.path.join(workdir, 'learning_curves.png')) > 0
  assert evaluate.best_checkpoint(workdir) == (workdir, 'best', best_step)
  config, *_ = runs.load_run(workdir, best_step, folder='best')
  assert config.train.select_by == 'robust'


@pytest.mark.long
def test_a_resumed_run_continues_the_selection(tiny_npz, tmp_path):
  whole = train.train_and_evaluate(_config(tiny_npz), str(tmp_path / 'whole'))
  parts = str(tmp_path / 'parts')
  config = _config(tiny_npz, checkpoint_every_steps=6)
  train.train_and_evaluate(config, parts, stop_after_steps=7)  # stopped after the first eval
  resumed = train.train_and_evaluate(config, parts)
  assert resumed['selected'] == whole['selected']
  assert checkpointing.saved_steps(os.path.join(parts, 'best')) == [whole['selected']['step']]


def test_without_a_validation_split_the_test_set_selects_as_before(tiny_npz, tmp_path):
  config = helpers.tiny_config(tiny_npz)
  results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert results['selected']['metric'] == 'test/accuracy'
  assert results['selected']['step'] == results['best_test_step']
  assert results['num_validation_examples'] == 0


def test_selection_settings_that_cannot_work_are_one_line(tiny_npz, tmp_path):
  config = _config(tiny_npz)
  config.eval.robust_examples = 0
  with pytest.raises(ConfigError, match=r"^config.train.select_by='robust': needs "
                     r'config.eval.robust_examples > 0'):
    validation.validate_config(config)
  text = load_config_file(os.path.join(REPO_ROOT, 'configs/text.py:offline_ag_news_gru_erm'))
  text.eval.robust_examples = 100
  with pytest.raises(ConfigError, match=r'^config.eval.robust_examples=100: ag_news is text '
                     r'\(token ids\), which the pixel PGD check cannot attack; use 0$'):
    validation.validate_config(text)
  config = _config(tiny_npz)
  config.dataset.validation_examples = 250
  with pytest.raises(DatasetError, match=r'^config.dataset.validation_examples=250: must be '
                     r'between 10 \(one per class\) and 246'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  with pytest.raises(ConfigError, match=r'^--checkpoint=best: name the run with --workdir=W'):
    evaluate.best_checkpoint(None)
  with pytest.raises(ConfigError, match=r'^--checkpoint=best: \S+ has no best checkpoint'):
    evaluate.best_checkpoint(str(tmp_path))
