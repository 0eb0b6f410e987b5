"""Every shipped config and variant validates, and its docstring starts with the command to run it."""
import glob
import os
import re

import pytest

from robust_jax.config import validation
from robust_jax.config.files import load_config_file
from tests.helpers import REPO_ROOT

CONFIG_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, 'configs', '*.py')))


def _variants(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location('c', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module, getattr(module, 'VARIANTS', (None,))


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_every_variant_validates(path):
  module, variants = _variants(path)
  assert 'python' in module.__doc__.split('\n\n')[1]  # the command comes first
  for variant in variants:
    validation.validate_config(load_config_file(f'{path}:{variant}' if variant else path))


@pytest.mark.parametrize('path', CONFIG_FILES, ids=os.path.basename)
def test_commands_in_the_docstring_name_valid_configs(path):
  module, _ = _variants(path)
  specs = re.findall(r'--config=(\S+)', module.__doc__)
  assert specs
  for spec in specs:
    validation.validate_config(load_config_file(os.path.join(os.path.dirname(path), '..', spec)))


def test_unknown_variant_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown config variant 'cifar11'; known: fashion_mnist"):
    load_config_file(CONFIG_FILES[0] + ':cifar11')


@pytest.mark.parametrize('method', ['erm', 'amp'])
def test_amp_table_configs_follow_the_official_recipe(method):
  """Every row of the AMP tables: the official trainer's recipe for ERM and AMP alike (papers.md
  1.3, 1.4), with the row's data augmentation and, for AMP, the README command's (ε, ζ)."""
  from robust_jax.config import defaults as config_defaults
  expected_amp = {('preact_resnet18', 'standard'): (0.5, 1.0), ('vgg16', 'standard'): (0.1, 0.2),
                  ('wrn28_10', 'vanilla'): (0.5, 1.0), ('wrn28_10', 'cutout'): (0.3, 0.5),
                  ('wrn28_10', 'autoaugment'): (0.1, 0.1)}
  assert len(config_defaults.AMP_TABLE_VARIANTS) == 15
  for variant in config_defaults.AMP_TABLE_VARIANTS:
    config = load_config_file(os.path.join(REPO_ROOT, 'configs',
                                           f'{method}.py:{variant}'))
    dataset, model, augmentation = config_defaults.amp_table_variant(variant)
    assert (config.dataset.name, config.model.name) == (dataset, model)
    assert config.train.batch_size == 50 and config.train.num_epochs == 200
    assert config.train.eval_every_epochs == 1
    assert dict(config.optimizer) == dict(
        name='sgd', learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
        grad_clip_norm=50.0, schedule='piecewise', warmup_epochs=0.0,
        boundaries_epochs=(100.0, 150.0), decay_factor=0.1)
    cutout = {'cifar10': 16, 'cifar100': 8, 'svhn': 20}[dataset]
    assert config.dataset.crop_fill == 128
    assert config.dataset.crop_padding == (2 if dataset == 'svhn' else 4)
    assert config.dataset.cutout_length == (cutout if augmentation in ('cutout', 'autoaugment')
                                            else 0)
    policy = {'svhn': 'svhn'}.get(dataset, 'cifar10') if augmentation == 'autoaugment' else 'none'
    assert config.dataset.autoaugment == policy
    if method == 'amp':
      section = config.weight_perturbation
      assert (section.epsilon, section.inner_lr) == expected_amp[model, augmentation]
      assert (section.inner_steps, section.ball, section.inner_grad_clip) == (1, 'per_tensor', 50.0)
      assert section.update_bn_on_inner_passes
    else:
      assert config.weight_perturbation.name == 'none'


def test_a_registered_section_refuses_a_key_the_component_lacks():
  from robust_jax.config import defaults as config_defaults
  assert config_defaults.registered('adversary', 'pgd', num_steps=40)['num_steps'] == 40
  with pytest.raises(ValueError, match=r"^config.adversary.num_step: not a key of adversary 'pgd'; "
                     r'known keys: epsilon, model_mode, norm, num_steps, random_start, step_size$'):
    config_defaults.registered('adversary', 'pgd', num_step=40)
