"""Command-line overrides: typed values, component switches with defaults, one-line errors."""
import math
import os
import subprocess
import sys

import pytest

from robust_jax.config import defaults as config_defaults, overrides as config_overrides, validation
from robust_jax.config.files import load_config_file
from robust_jax.config.schema import ConfigError
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def _config(spec=None):
  if spec is None:
    return config_defaults.default_config()
  return load_config_file(os.path.join(ROOT, 'configs', spec))


def test_values_take_the_type_of_the_value_they_replace():
  config = config_overrides.apply_overrides(_config(), [
      'optimizer.learning_rate=3e-3', 'optimizer.weight_decay=1', 'train.num_epochs=5',
      'train.log_grad_norm=true', 'model.dropout_sites=classifier',
      'optimizer.schedule=piecewise', 'optimizer.boundaries_epochs=(1, 2.5)',
      "robustness.epsilons=('0', '8/255')",
      'robustness.large_epsilon=0.5', 'dataset.path=/data/x'])
  assert config.optimizer.learning_rate == 3e-3
  assert config.optimizer.weight_decay == 1.0 and isinstance(config.optimizer.weight_decay, float)
  assert config.train.num_epochs == 5 and config.train.log_grad_norm is True
  assert config.model.dropout_sites == ('classifier',)  # a bare word is a 1-tuple
  assert config.optimizer.boundaries_epochs == (1, 2.5)
  assert config.robustness.epsilons == ('0', '8/255')
  assert config.robustness.large_epsilon == '0.5'  # strings stay strings
  assert config.dataset.path == '/data/x'
  validation.validate_config(config)


def test_the_config_passed_in_is_not_changed():
  config = _config()
  config_overrides.apply_overrides(config, ['adversary.name=pgd', 'seed=3'])
  assert config.adversary.to_dict() == {'name': 'none'} and config.seed == 0


@pytest.mark.parametrize('overrides', [
    ['adversary.name=pgd', 'adversary.epsilon=0.05'],
    ['adversary.epsilon=0.05', 'adversary.name=pgd'],
])
def test_a_switch_fills_the_defaults_before_other_overrides_in_any_order(overrides):
  config = config_overrides.apply_overrides(_config(), overrides)
  assert config.adversary.to_dict() == dict(name='pgd', epsilon=0.05, step_size=0.025,
                                            num_steps=10, norm='linf', random_start=True,
                                            model_mode='eval')
  validation.validate_config(config)


def test_a_switch_to_the_component_already_there_keeps_its_values():
  config = config_overrides.apply_overrides(_config('mnist_adversarial.py:pgd'),
                                            ['adversary.name=pgd', 'adversary.epsilon=0.2'])
  assert (config.adversary.num_steps, config.adversary.step_size) == (40, 0.01)
  assert config.adversary.epsilon == 0.2


def test_a_model_switch_fills_the_model_defaults():
  config = config_overrides.apply_overrides(
      _config('erm.py:cifar10_preact_resnet18'),
      ['model.hidden_size=128', 'model.name=cnn', 'model.widths=(8, 16)'])
  assert config.model.to_dict() == dict(name='cnn', dropout_rate=0.0, dropout_sites=(),
                                        widths=(8, 16), kernel_size=3, hidden_size=128,
                                        batch_norm=False)
  validation.validate_config(config)


# Components for text data only, checked on a text config (each is a one-line error on images).
TEXT_ONLY = {('model', 'gru'), ('model', 'lstm'), ('model', 'textcnn'),
             ('adversary', 'embedding_fgm'), ('adversary', 'embedding_pgd'),
             ('weight_perturbation', 'dropattack_embedding')}


@pytest.mark.parametrize('section', sorted(config_overrides.SWITCHABLE))
def test_every_registered_component_has_a_valid_default_section(section):
  components = config_overrides.SWITCHABLE[section]
  for name in components.names():
    base = _config()
    if (section, name) in TEXT_ONLY:
      with pytest.raises(ConfigError, match=r'^[^\n]*\bimage data\b[^\n]*$'):
        validation.validate_config(config_overrides.apply_overrides(base, [
            f'{section}.name={name}']))
      base = _config('text.py:offline_ag_news_gru_erm')
    config = config_overrides.apply_overrides(base, [f'{section}.name={name}'])
    assert config[section].to_dict() == {'name': name, **components.lookup('', name).defaults}
    components.validate(f'config.{section}', config[section])
    if (section, name) == ('loss', 'mdl'):  # MDL needs dropout: a clear cross-check error
      with pytest.raises(ConfigError, match=r'config.model.dropout_rate=0.0: MDL needs dropout'):
        validation.validate_config(config)
      config = config_overrides.apply_overrides(
          config, ['model.dropout_rate=0.5', 'model.dropout_sites=classifier'])
    validation.validate_config(config)


BAD_OVERRIDES = [
    # (overrides, the one-line error)
    (['loss.lamda=1'], 'config.loss.lamda: unknown key; known keys: name'),
    (['optimiser.learning_rate=1'], 'config.optimiser: unknown key; known keys: adversary, '
     'dataset, distributed, eval, feature_mask, loss, model, optimizer, robustness, seed, '
     'targets, train, weight_perturbation'),
    (['adversary.name=pgd', 'adversary.num_step=5'], 'config.adversary.num_step: unknown key; '
     'known keys: epsilon, model_mode, name, norm, num_steps, random_start, step_size'),
    (['adversary.name=pgdd'],
     "config.adversary.name='pgdd': unknown adversary; choose one of: embedding_fgm, "
     'embedding_pgd, fgsm, none, pgd'),
    (['model.name=resnet50'], "config.model.name='resnet50': unknown model; choose one of: cnn, "
     'gru, lstm, mlp, preact_resnet18, textcnn, vgg16, wrn28_10, wrn34_10'),
    (['adversary=pgd'],
     'config.adversary: is a section; override its keys, e.g. --config.adversary.name=...'),
    (['seed.value=1'], 'config.seed.value: config.seed=0 is a value, not a section'),
    (['train.batch_size=1e3'],
     "config.train.batch_size='1e3': must be of type int, like its current value 128"),
    (['train.log_grad_norm=yes please'],
     "config.train.log_grad_norm='yes please': must be of type bool, like its current value False"),
    (['model.dropout_sites=(a b)'],
     "config.model.dropout_sites='(a b)': must be of type tuple, like its current value ()"),
]


@pytest.mark.parametrize('overrides,expected', BAD_OVERRIDES)
def test_bad_override_is_one_line(overrides, expected):
  with pytest.raises(ConfigError) as error:
    config_overrides.apply_overrides(_config(), overrides)
  assert str(error.value) == expected


@pytest.mark.parametrize('text', ['nan', 'inf', '-inf', 'NaN'])
def test_non_finite_overrides_fail_validation(text):
  config = config_overrides.apply_overrides(_config(), [f'optimizer.learning_rate={text}'])
  assert not math.isfinite(config.optimizer.learning_rate)
  with pytest.raises(ConfigError, match=r'^config.optimizer.learning_rate=-?(nan|inf): must be > '
                     r'0.0 \(finite\)$'):
    validation.validate_config(config)


def test_split_argv_takes_out_only_the_overrides():
  argv = ['main.py', '--config=configs/erm.py:fashion_mnist', '--config.seed=1', '--workdir=W',
          '--config.model.dropout_sites=(\'classifier\',)', '--allow_config_change']
  assert config_overrides.split_argv(argv) == (
      ['main.py', '--config=configs/erm.py:fashion_mnist', '--workdir=W', '--allow_config_change'],
      ['seed=1', "model.dropout_sites=('classifier',)"])
  with pytest.raises(ConfigError, match=r'^--config.seed: give a value, e.g. --config.seed=VALUE$'):
    config_overrides.split_argv(['main.py', '--config.seed', '1'])


def _main(tmp_path, *args):
  run = subprocess.run([sys.executable, '-m', 'robust_jax.main', f'--workdir={tmp_path / "w"}',
                        *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert run.returncode == 1
  return run.stderr.strip().splitlines()


def test_main_reports_a_bad_override_in_one_line(tmp_path):
  assert _main(tmp_path, '--config=configs/fashion_mnist_cnn.py:quick', '--config.loss.lamda=1') == [
      'error: config.loss.lamda: unknown key; known keys: name']


def test_main_reports_bad_keys_from_a_file_and_validates_after_the_overrides(tmp_path):
  """An unknown key set by a config file is one line too; an override of a switched section is
  validated after the switch filled in that section's defaults."""
  path = tmp_path / 'typo.py'
  path.write_text('from robust_jax.config import defaults as config_defaults\n\n\ndef get_config(arg=None):\n'
                  '  config = config_defaults.default_config()\n'
                  '  config.optimizer.lr = 0.1\n  return config\n')
  assert _main(tmp_path, f'--config={path}') == [
      'error: config.optimizer.lr: unknown key; known keys: boundaries_epochs, decay_factor, '
      'grad_clip_norm, learning_rate, momentum, name, nesterov, schedule, warmup_epochs, '
      'weight_decay']
  assert _main(tmp_path, '--config=configs/fashion_mnist_cnn.py', '--config.adversary.epsilon=-1',
               '--config.adversary.name=fgsm') == [
                   "error: config.adversary.epsilon=-1.0: must be > 0.0 (ε = 0 leaves the images "
                   "clean: use adversary 'none')"]


def test_split_overrides_keeps_commas_inside_values():
  assert config_overrides.split_overrides(
      'train.batch_size=512,model.widths=(16, 32),seed=1') == [
          'train.batch_size=512', 'model.widths=(16, 32)', 'seed=1']
  assert config_overrides.split_overrides('') == []
