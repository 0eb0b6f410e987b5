"""`robust_jax.main` and `robust_jax.evaluate` end every expected failure with one line and a
non-zero exit (`robust_jax.cli`), read configs defensively (`config_files.load_config_file`) and evaluate
text runs and old checkpoints correctly (`runs.load_run`)."""
import errno
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from robust_jax import cli, errors, evaluate
from robust_jax.config import files as config_files, schema as config_schema
from robust_jax.training import loop as train, runs, workdir as workdir_lib
from tests import helpers
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def _command(module, *args, env=None):
  """(exit status, stderr lines, stdout) of `python -m robust_jax.MODULE ARGS`."""
  run = subprocess.run([sys.executable, '-m', f'robust_jax.{module}', *map(str, args)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, **(env or {})})
  return run.returncode, run.stderr.strip().splitlines(), run.stdout


def _config_file(tmp_path, body: str) -> str:
  path = tmp_path / 'config.py'
  path.write_text(body)
  return str(path)


@pytest.mark.parametrize('body, message', [
    ('def get_config(arg=None)\n  return None\n',
     r"--config=\S+config.py: expected ':' at line 1 of \S+config.py"),
    ('import no_such_module\n',
     r"importing \S+config.py raised ModuleNotFoundError: No module named 'no_such_module'"),
    ('CONFIG = 1\n', r'defines no get_config\(arg=None\) function'),
    ('def get_config(arg=None):\n  return None\n',
     r'get_config\(None\) returned NoneType; it must return an ml_collections.ConfigDict'),
    ('def get_config(arg=None):\n  return {"seed": 0}\n', r'get_config\(None\) returned dict'),
    ('def get_config(arg=None):\n  raise ValueError("no such variant")\n',
     r'--config=\S+: no such variant$'),
])
def test_a_bad_config_file_is_one_config_error(tmp_path, body, message):
  with pytest.raises(config_schema.ConfigError, match=message):
    config_files.load_config_file(_config_file(tmp_path, body))


def test_a_missing_config_file_and_an_unknown_modifier_are_config_errors():
  with pytest.raises(config_schema.ConfigError, match="no such file 'configs/nope.py'"):
    config_files.load_config_file('configs/nope.py')
  with pytest.raises(config_schema.ConfigError,
                     match="unknown modifier 'fast' after the variant; known: quick"):
    config_files.load_config_file(os.path.join(ROOT, 'configs/amp.py:fashion_mnist:fast'))


@pytest.mark.parametrize('spec', ['configs/amp.py:quick', 'configs/mdl.py:fashion_mnist:quick',
                                  'configs/fashion_mnist_cnn.py:quick',
                                  'configs/text.py:offline_ag_news_gru_amp:quick'])
def test_every_config_takes_the_quick_modifier(spec):
  quick = config_files.load_config_file(os.path.join(ROOT, spec))
  full = config_files.load_config_file(os.path.join(ROOT, spec.removesuffix(':quick')))
  assert quick.train.num_epochs == 1 and full.train.num_epochs > 1
  text = quick.dataset.name == 'ag_news'
  assert quick.eval.num_examples == (config_files.QUICK_TEXT_EVAL_EXAMPLES if text else 0)
  for section in ('model', 'loss', 'adversary', 'weight_perturbation', 'dataset', 'optimizer'):
    assert quick[section] == full[section], section
  assert config_files.config_name(spec) == config_files.config_name(spec.removesuffix(':quick')) + '_quick'


def test_cli_run_prints_one_line_for_expected_failures(capsys, monkeypatch):
  monkeypatch.delenv(cli.TRACEBACK_VARIABLE, raising=False)
  def fail(error):
    def main():
      raise error
    return main
  with pytest.raises(SystemExit) as stopped:
    cli.run(fail(errors.UserError('the thing: do this instead')))
  assert stopped.value.code == cli.EXIT_USER_ERROR != 0
  assert capsys.readouterr().err == 'error: the thing: do this instead\n'
  with pytest.raises(SystemExit):
    cli.run(fail(OSError(errno.ENOSPC, 'No space left on device', '/w/checkpoints/5')))
  assert capsys.readouterr().err == ('error: No space left on device: /w/checkpoints/5 (free some '
                                     'space or use another folder; a training rerun resumes from '
                                     'the newest intact checkpoint)\n')
  with pytest.raises(RuntimeError):  # a bug keeps its traceback
    cli.run(fail(RuntimeError('bug')))
  monkeypatch.setenv(cli.TRACEBACK_VARIABLE, '1')
  with pytest.raises(errors.UserError):  # the full traceback on request
    cli.run(fail(errors.UserError('x')))


def test_every_expected_failure_class_is_a_user_error():
  from robust_jax.data import DatasetError
  for error in (config_schema.ConfigError, DatasetError, train.NonFiniteLossError,
                workdir_lib.WorkdirError, runs.RunNotFoundError):
    assert issubclass(error, errors.UserError), error


@pytest.mark.parametrize('workdir, message', [
    ('', r'^error: --workdir is empty: name the folder'),
    ('FILE', r'^error: File exists: .*FILE \(a file stands where a folder is expected'),
    ('/proc/robust_jax_workdir', r'^error: No such file or directory: /proc/robust_jax_workdir'),
])
def test_main_refuses_a_bad_workdir_in_one_line(tmp_path, workdir, message):
  if workdir == 'FILE':
    workdir = tmp_path / 'FILE'
    workdir.write_text('not a folder')
  status, stderr, _ = _command('main', '--config=configs/fashion_mnist_cnn.py', f'--workdir={workdir}')
  assert status == 1 and len(stderr) == 1, stderr
  assert re.search(message, stderr[0]), stderr


def test_main_reports_a_nan_loss_and_a_bad_config_file_in_one_line(tmp_path, tiny_npz):
  path = _config_file(tmp_path, 'from tests import helpers\n\n\ndef get_config(arg=None):\n'
                      f'  config = helpers.tiny_config({tiny_npz!r}, log_every_steps=1)\n'
                      "  config.optimizer.update(name='sgd', learning_rate=1e30, "
                      "schedule='constant')\n  return config\n")
  status, stderr, _ = _command('main', f'--config={path}', f'--workdir={tmp_path / "w"}',
                               env={'PYTHONPATH': ROOT})
  assert status == 1 and not any('Traceback' in line for line in stderr), stderr  # after the bar:
  assert stderr[-1].startswith('error: loss became ') and 'last good checkpoint is kept' in stderr[-1]
  status, stderr, _ = _command('main', f'--config={_config_file(tmp_path, "x = (")}',
                               f'--workdir={tmp_path / "w2"}')
  assert status == 1 and len(stderr) == 1 and "'(' was never closed at line 1" in stderr[0]
  status, stderr, _ = _command('main', f'--config={path}', f'--workdir={tmp_path / "w"}',
                               env={'PYTHONPATH': ROOT, cli.TRACEBACK_VARIABLE: '1'})
  assert status == 1 and 'Traceback (most recent call last):' in stderr


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_npz):
  """A tiny image run with checkpoints at steps 5 and 8 (num_steps 8)."""
  workdir = str(tmp_path_factory.mktemp('trained') / 'w')
  config = helpers.tiny_config(tiny_npz, num_steps=8)
  train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  return workdir


@pytest.mark.parametrize('args, message', [
    (['--checkpoint={w}/checkpoints/latest'],
     r'--checkpoint=\S+/checkpoints/latest: must name a step folder W/checkpoints/STEP .*'
     r'e\.g\. W/checkpoints/8\); for the newest use --workdir=W'),
    (['--checkpoint={w}/checkpoints/999'], r'no checkpoint for step 999 .*available steps: 5, 8'),
    (['--workdir={w}', '--output_dir={w}/config.json'], r'File exists: \S+config.json'),
    (['--workdir={w}', '--epsilons=1e400'], r'config.robustness.epsilons'),
    (['--workdir={w}/checkpoints'], r'not a training workdir \(it has no config.json\)'),
    ([], r'give --workdir=W \(the newest checkpoint\) or --checkpoint=W/checkpoints/STEP'),
])
def test_evaluate_refuses_bad_arguments_in_one_line_before_attacking(trained, args, message):
  status, stderr, stdout = _command('evaluate', *[a.format(w=trained) for a in args])
  assert status == 1 and len(stderr) == 1, stderr
  assert re.search(message, stderr[0]), stderr
  assert 'ε' not in stdout and not os.path.exists(os.path.join(trained, 'robustness'))


def test_an_old_checkpoint_is_evaluated_with_the_config_that_trained_it(trained, tmp_path):
  """A change recorded at step 5 applies to the steps after 5: the checkpoint at 5 was trained
  without it, the one at 8 with it."""
  workdir = str(tmp_path / 'w')
  os.makedirs(workdir)
  for name in ('config.json',):
    with open(os.path.join(trained, name)) as f, open(os.path.join(workdir, name), 'w') as g:
      g.write(f.read())
  with open(os.path.join(workdir, workdir_lib.HISTORY_FILE), 'w') as f:
    f.write(json.dumps({'step': 5, 'changes': {'optimizer.learning_rate': [0.01, 0.5]}}) + '\n')
  assert workdir_lib.read_config(workdir, 5).optimizer.learning_rate == 0.01
  assert workdir_lib.read_config(workdir, 8).optimizer.learning_rate == 0.5
  assert workdir_lib.read_config(workdir).optimizer.learning_rate == 0.5
  assert runs.load_config(workdir, 5).optimizer.learning_rate == 0.01


def test_text_runs_train_report_texts_and_are_evaluable(tmp_path):
  folder = helpers.write_text_csv_folder(tmp_path)
  config = helpers.tiny_text_config(folder, str(tmp_path / 'cache'))
  config.eval.num_examples = 10
  workdir = str(tmp_path / 'w')
  results = train.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
  assert results['num_test_examples'] == 10 and results['modality'] == 'text'
  status, stderr, stdout = _command('evaluate', f'--workdir={workdir}', '--num_examples=20')
  assert status == 0, stderr
  with open(os.path.join(workdir, 'robustness', 'robustness.json')) as f:
    record = json.load(f)
  assert record['modality'] == 'text' and record['num_examples'] == 20
  assert 0.0 <= record['accuracy'] <= 1.0 and record['checkpoint_step'] == results['steps']
  assert '| 20 |' in stdout
  status, stderr, _ = _command('evaluate', f'--workdir={workdir}', '--attacks=fgsm')
  assert status == 1 and len(stderr) == 1 and 'is a text run' in stderr[0]


def test_eval_num_examples_evaluates_the_first_test_examples(tmp_path, tiny_npz):
  config = helpers.tiny_config(tiny_npz, num_steps=2)
  config.eval.num_examples = 40
  results = train.train_and_evaluate(config, str(tmp_path / 'w'), devices=jax.devices()[:1])
  assert results['num_test_examples'] == 40
  assert np.isclose(results['test_accuracy'] * 40, round(results['test_accuracy'] * 40))
  with open(tmp_path / 'w' / 'metrics.jsonl') as f:
    lines = [json.loads(line) for line in f]
  assert [r['train/steps_averaged'] for r in lines if 'train/loss' in r] == [2]


def test_checkpoint_location_parses_only_step_folders(tmp_path):
  assert evaluate.checkpoint_location('W/checkpoints/12/') == (os.path.abspath('W'), 'checkpoints',
                                                               12)
  assert evaluate.checkpoint_location('W/best/6') == (os.path.abspath('W'), 'best', 6)
  for bad in ('W/checkpoints', 'W/12', 'W/checkpoints/best'):
    with pytest.raises(config_schema.ConfigError, match='must name a step folder'):
      evaluate.checkpoint_location(bad)
  with pytest.raises(OSError):
    evaluate.require_writable(_config_file(tmp_path, ''))  # a file where the folder should be


@pytest.mark.parametrize('body, message', [
    ('def get_config(arg=None):\n  return {}["x"]\n',
     r"^--config=\S+config.py: get_config\(None\) raised KeyError: 'x'$"),
    ('def get_config():\n  return None\n',
     r'^--config=\S+config.py: \S+config.py defines get_config\(\); it must take one argument, '
     r'the variant: def get_config\(arg=None\)$'),
    ('import sys\nsys.exit(3)\n', r'^--config=\S+config.py: importing \S+config.py called '
     r'sys.exit\(3\)$'),
    ('import sys\n\n\ndef get_config(arg=None):\n  sys.exit("bye")\n',
     r"^--config=\S+config.py: get_config\(None\) called sys.exit\('bye'\)$"),
])
def test_any_failure_of_a_config_file_is_one_config_error(tmp_path, body, message):
  with pytest.raises(config_schema.ConfigError, match=message):
    config_files.load_config_file(_config_file(tmp_path, body))


def test_a_config_path_that_is_a_folder_is_one_config_error(tmp_path):
  with pytest.raises(config_schema.ConfigError,
                     match=r"^--config=\S+: '\S+' is a folder, not a config file \(a config is a "
                     r'Python file, e.g. configs/erm.py\)$'):
    config_files.load_config_file(str(tmp_path))


def test_main_refuses_a_stray_positional_argument_in_one_line(tmp_path):
  status, stderr, _ = _command('main', '--config=configs/fashion_mnist_cnn.py',
                               f'--workdir={tmp_path / "w"}', 'stray')
  assert status == 1 and stderr == [
      "error: unexpected argument 'stray': robust_jax.main takes only flags, --config=FILE, "
      '--workdir=W and --config.KEY=VALUE (a value with spaces needs quotes)'], stderr
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('args, message', [
    (['--checkpoint={w}/checkpoints/999'],
     r'^error: no checkpoint for step 999 in \S+/checkpoints; available steps: 5, 8$'),
    (['--workdir={w}/..', '--checkpoint={w}/checkpoints/8'],
     r'^error: --workdir=\S+ and --checkpoint=\S+ name different workdirs; give only --checkpoint'),
    (['--workdir={w}', '--output_dir={w}/checkpoints/7'],
     r'^error: --output_dir=\S+/checkpoints/7: inside \S+/checkpoints, the checkpoints folder of a '
     r'workdir, which must hold checkpoints only; use another folder'),
    (['--workdir={w}', '--epsilons='],
     r"^error: --epsilons is empty: give at least one value, or drop the flag for the config's$"),
    (['--workdir={w}', '--attacks='], r'^error: --attacks is empty'),
    (['--workdir={w}', '--preset=autoattack', '--autoattack_settings=apgd_steps=²'],
     r"^error: --autoattack_settings='apgd_steps=²': the value must be an int >= 1$"),
])
def test_evaluate_refuses_conflicting_or_empty_flags_in_one_line(trained, args, message):
  """Each used to evaluate something else silently, write a fake step 7, or end in a message
  with a stray '(no path given)' or without the flag."""
  status, stderr, _ = _command('evaluate', *[a.format(w=trained) for a in args])
  assert status == 1 and len(stderr) == 1, stderr
  assert re.search(message, stderr[0]), stderr
  assert not os.path.exists(os.path.join(trained, 'checkpoints', '7'))
