"""One workdir, one experiment: the config diff, refusals that write nothing, allowed changes and
their history, checkpoints kept across reruns, and `runs.load_run`'s errors."""
import json
import os
import shutil

import numpy as np
import pytest


from robust_jax.config import defaults as config_defaults
from robust_jax.config import schema as config_schema
from robust_jax.training import checkpointing, loop as train, runs, workdir, workdir_config
from tests import helpers


def _config_json(path):
  with open(os.path.join(path, 'config.json')) as f:
    return json.load(f)


def test_config_changes_lists_result_keys_and_skips_neutral_ones():
  stored = {'seed': 0, 'optimizer': {'learning_rate': 0.001, 'name': 'adam'},
            'train': {'num_epochs': 3, 'log_every_steps': 50, 'max_checkpoints_to_keep': 2},
            'model': {'widths': [4, 8]}, 'robustness': {'epsilons': ['0', '0.1']},
            'distributed': {'process_id': 0}, 'eval': {'batch_size': 1000}}
  new = json.loads(json.dumps(stored))
  new['model']['widths'] = (4, 8)  # a tuple equals the list JSON stored
  assert workdir_config.config_changes(stored, new) == []
  new['optimizer']['learning_rate'] = 0.003
  new['train'].update(num_epochs=5, log_every_steps=1, max_checkpoints_to_keep=9)
  new['robustness']['epsilons'] = ['8/255']
  new['distributed']['process_id'] = 1
  new['eval']['batch_size'] = 10
  new['train']['num_steps'] = 7
  changes = workdir_config.config_changes(stored, new)
  assert changes == [('optimizer.learning_rate', 0.001, 0.003), ('train.num_epochs', 3, 5),
                     ('train.num_steps', '(absent)', 7)]
  assert workdir_config.describe_changes(changes) == (
      'optimizer.learning_rate 0.001 -> 0.003, train.num_epochs 3 -> 5, '
      'train.num_steps (absent) -> 7')


def test_changed_config_is_refused_in_one_line_and_touches_nothing(run_copy):
  config, path = run_copy
  before = helpers.snapshot(path)
  config.optimizer.learning_rate = 0.003
  config.train.num_epochs = 5
  with pytest.raises(config_schema.ConfigError) as error:
    train.train_and_evaluate(config, path)
  assert str(error.value) == (
      f'workdir {path} holds another experiment: optimizer.learning_rate 0.01 -> 0.003, '
      'train.num_epochs 1 -> 5; use a new --workdir, or --allow_config_change for keys that keep '
      'shapes')
  config.model.widths = (4, 16)  # a shape change: refused even when changes are allowed
  shape_error = r'model\.widths \[4, 8\] -> \[4, 16\].*change the shapes of the trained arrays'
  with pytest.raises(workdir.WorkdirError, match=shape_error):
    train.train_and_evaluate(config, path, allow_config_change=True)
  assert helpers.snapshot(path) == before


def test_neutral_changes_rerun_a_finished_run_without_pruning(run_copy, eight_devices):
  config, path = run_copy
  config.train.update(log_every_steps=1, max_checkpoints_to_keep=1, checkpoint_every_minutes=0.0)
  config.robustness.epsilons = ('0', '8/255')
  stored = _config_json(path)
  metrics = helpers.snapshot(path)['metrics.jsonl']
  results = train.train_and_evaluate(config, path, devices=eight_devices[:1])
  assert results['steps'] == 8 and helpers.snapshot(path)['metrics.jsonl'] == metrics  # nothing trained
  assert checkpointing.saved_steps(os.path.join(path, 'checkpoints')) == [5, 8]
  refreshed = _config_json(path)
  assert refreshed['robustness']['epsilons'] == ['0', '8/255']  # neutral keys follow the command
  assert refreshed['train']['max_checkpoints_to_keep'] == 1
  assert workdir_config.config_changes(stored, refreshed) == []
  assert not os.path.exists(os.path.join(path, 'config_history.jsonl'))


def test_allowed_change_is_recorded_and_keeps_the_finished_checkpoint(run_copy, eight_devices):
  config, path = run_copy
  stored = _config_json(path)
  config.train.update(num_epochs=2, max_checkpoints_to_keep=1)
  config.optimizer.learning_rate = 0.003
  results = train.train_and_evaluate(config, path, devices=eight_devices[:1],
                                     allow_config_change=True)
  assert results['steps'] == 16
  assert _config_json(path)['optimizer'] == stored['optimizer']  # what trained steps 1..8
  assert workdir_config.read_history(path) == [{'step': 8, 'changes': {
      'optimizer.learning_rate': [0.01, 0.003], 'train.num_epochs': [1, 2]}}]
  assert workdir_config.read_config(path).optimizer.learning_rate == 0.003
  # The finished 1-epoch run's checkpoints outlive max_checkpoints_to_keep=1.
  assert checkpointing.saved_steps(os.path.join(path, 'checkpoints')) == [5, 8, 16]
  # The changed config is now the workdir's: rerunning it needs no flag and changes nothing.
  assert train.train_and_evaluate(config, path, devices=eight_devices[:1])['steps'] == 16
  assert len(workdir_config.read_history(path)) == 1
  assert runs.load_config(path).train.num_epochs == 2


def test_workdirs_older_than_new_keys_resume_and_unexplained_checkpoints_are_refused(run_copy):
  config, path = run_copy
  stored = _config_json(path)
  del stored['train']['num_steps'], stored['train']['checkpoint_every_minutes']
  del stored['train']['compute_dtype']
  for key in config_defaults.TEXT_DATASET_DEFAULTS:
    del stored['dataset'][key]
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(stored, f)
  workdir.claim(path, config, checkpoint_step=8, allow_config_change=False)  # not refused
  assert workdir_config.read_config(path).train.num_steps == 0
  assert workdir_config.read_config(path).dataset.max_length == 256
  os.remove(os.path.join(path, 'config.json'))
  with pytest.raises(workdir.WorkdirError, match='has checkpoints but no config.json'):
    workdir.claim(path, config, checkpoint_step=8, allow_config_change=False)


def test_load_run_names_missing_steps_and_non_workdirs(finished_run, tmp_path):
  _, path = finished_run
  with pytest.raises(FileNotFoundError) as error:
    runs.load_run(path, step=999)
  assert str(error.value) == (f'no checkpoint for step 999 in {path}/checkpoints; '
                              'available steps: 5, 8')
  with pytest.raises(FileNotFoundError, match='not a training workdir'):
    runs.load_run(str(tmp_path))
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('text, message', [
    ('{"seed": ', r'config.json is damaged \(Expecting value: line 1 column 10 \(char 9\)\); '
                  r'restore it from a copy, or use a new --workdir$'),
    ('[1, 2]', r'config.json holds a JSON list, not an object; restore it from a copy'),
])
def test_a_damaged_config_json_is_one_line_naming_it(run_copy, text, message):
  config, path = run_copy
  with open(os.path.join(path, 'config.json'), 'w') as f:
    f.write(text)
  for attempt in (lambda: runs.load_run(path),
                  lambda: workdir.claim(path, config, checkpoint_step=8,
                                        allow_config_change=False)):
    with pytest.raises(workdir.WorkdirError, match=message):
      attempt()


def test_other_data_at_the_same_path_are_refused_at_resume_and_evaluation(
    finished_run, tmp_path, eight_devices):
  """The npz replaced by other data used to evaluate to 8 % and resume on the new data."""
  config, path = finished_run
  copy = str(tmp_path / 'run')
  shutil.copytree(path, copy)
  config = config.copy_and_resolve_references()
  config.dataset.path = str(tmp_path / 'data.npz')
  shutil.copy(finished_run[0].dataset.path, config.dataset.path)
  stored = _config_json(copy)
  stored['dataset']['path'] = config.dataset.path
  with open(os.path.join(copy, 'config.json'), 'w') as f:
    json.dump(stored, f)
  runs.load_run(copy)  # the same bytes at another path are the same data
  (x_train, y_train), (x_test, y_test) = (helpers.quadrant_images(256, 2),
                                          helpers.quadrant_images(64, 3))
  np.savez(config.dataset.path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
  message = (f'workdir {copy} was trained on other data: npz file {config.dataset.path!r}, '
             'train split (x_train, y_train) differs from the data recorded in '
             f'{copy}/run.json when its training started; restore that data, or use a new '
             '--workdir')
  with pytest.raises(workdir.WorkdirError) as error:
    runs.load_run(copy)
  assert str(error.value) == message
  before = helpers.snapshot(copy)
  with pytest.raises(workdir.WorkdirError) as error:
    train.train_and_evaluate(config, copy, devices=eight_devices[:1])
  assert str(error.value) == message
  assert helpers.snapshot(copy) == before


def test_a_damaged_config_history_is_one_line_naming_it(run_copy):
  _, path = run_copy
  history = os.path.join(path, workdir_config.HISTORY_FILE)
  for damage in ('{"step": 5, "changes": \n', '[1, 2]\n'):
    with open(history, 'w') as f:
      f.write(damage)
    with pytest.raises(workdir_config.WorkdirError) as error:
      workdir_config.read_config(path)
    assert str(error.value) == (
        f'{history} is damaged (each line must be a JSON record with "step" and "changes"); '
        'restore it from a copy, or use a new --workdir')


def test_a_schedule_refused_in_steps_leaves_the_workdir_unrecorded(tiny_npz, tmp_path, eight_devices):
  """The warm-up of 0.01 epochs rounds to 0 of the 8 steps per epoch: refused before config.json
  (or, on a resume, config_history.jsonl) records the config."""
  config = helpers.tiny_config(tiny_npz, num_epochs=1)
  config.optimizer.warmup_epochs = 0.01
  path = str(tmp_path / 'run')
  with pytest.raises(config_schema.ConfigError, match=r'^config.optimizer.warmup_epochs=0.01: '
                     'rounds to 0 steps at 8 steps per epoch'):
    train.train_and_evaluate(config, path, devices=eight_devices[:1])
  assert os.listdir(path) == []
