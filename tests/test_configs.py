"""Every shipped config and variant validates, and its docstring starts with the command to run it."""
import glob
import os
import re

import pytest

from robust_jax import validation
from robust_jax.runs import load_config_file

CONFIG_FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), '..', 'configs', '*.py')))


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
