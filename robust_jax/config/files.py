"""Experiment config files: `--config=configs/x.py:VARIANT[:MODIFIER]` as a ConfigDict."""
from __future__ import annotations

import importlib.util
import inspect
import os

import ml_collections

from robust_jax import data
from robust_jax.config.schema import ConfigError

__all__ = ['MODIFIERS', 'config_name', 'load_config_file', 'make_quick']


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """The config of 'configs/x.py:variant' (variant optional), as `--config` of robust_jax.main.

  Modifiers follow the variant after another colon and apply to any config (`MODIFIERS`):
  'configs/amp.py:quick' (the default variant, one epoch) or
  'configs/text.py:offline_ag_news_gru_amp:quick'.

  Raises ConfigError (one line, naming `--config=spec`) when the file is missing or a folder, does
  not run (e.g. a syntax error: the line is named; any exception or `sys.exit` on import), has no
  `get_config(arg)`, does not know the variant, fails (any exception or `sys.exit`), or returns
  something other than an `ml_collections.ConfigDict`.
  """
  path, _, variant = spec.partition(':')
  variant, *modifiers = variant.split(':')
  where = f'--config={spec}'
  unknown = sorted(set(modifiers) - set(MODIFIERS))
  if unknown:
    raise ConfigError(f'{where}: unknown modifier {unknown[0]!r} after the variant; known: '
                      f'{", ".join(MODIFIERS)}')
  if os.path.isdir(path):
    raise ConfigError(f'{where}: {path!r} is a folder, not a config file (a config is a Python '
                      'file, e.g. configs/erm.py)')
  if not os.path.isfile(path):
    raise ConfigError(f'{where}: no such file {path!r}' + (
        '' if path.endswith('.py') else ' (a config is a Python file, e.g. configs/erm.py)'))
  module_spec = importlib.util.spec_from_file_location('experiment_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigError(f'{where}: {e.msg} at line {e.lineno} of {path}') from None
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except  # the user's code failed
    raise ConfigError(f'{where}: importing {path} {_failure(e)}') from None
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    raise ConfigError(f'{where}: {path} defines no get_config(arg=None) function returning an '
                      'ml_collections.ConfigDict')
  try:
    inspect.signature(get_config).bind(None)
  except (TypeError, ValueError):  # it takes no argument, or more than one
    raise ConfigError(f'{where}: {path} defines get_config{inspect.signature(get_config)}; it '
                      'must take one argument, the variant: def get_config(arg=None)') from None
  if variant in MODIFIERS and variant not in _variants_of(module):  # 'x.py:quick'
    variant, modifiers = '', [variant, *modifiers]
  try:
    config = get_config(variant or None)
  except ValueError as e:  # parse_variant's unknown variant, or the file's own check
    raise ConfigError(f'{where}: {e}') from None
  except (Exception, SystemExit) as e:  # pylint: disable=broad-except  # the user's code failed
    raise ConfigError(f'{where}: get_config({variant or None!r}) {_failure(e)}') from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'{where}: get_config({variant or None!r}) returned {type(config).__name__}; '
                      'it must return an ml_collections.ConfigDict (start from '
                      'robust_jax.config.defaults.default_config())')
  for modifier in modifiers:
    MODIFIERS[modifier](config)
  return config


def _failure(error: BaseException) -> str:
  """How the user's config code failed: "raised KeyError: 'x'" or 'called sys.exit(3)'."""
  if isinstance(error, SystemExit):
    return f'called sys.exit({error.code!r})'
  return f'raised {type(error).__name__}: {error}'


def _variants_of(module) -> tuple[str, ...]:
  return tuple(getattr(module, 'VARIANTS', ()))


def make_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `quick` modifier of every config, for a first look: one epoch, and a text run evaluates
  on the first 1,000 test texts; model, method, data and batch stay as the config has them."""
  config.train.num_epochs, config.train.num_steps = 1, 0
  if data.spec_for(config.dataset).modality == 'text':
    config.eval.num_examples = QUICK_TEXT_EVAL_EXAMPLES
  return config


QUICK_TEXT_EVAL_EXAMPLES = 1000
# Modifiers any config takes after its variant: --config=configs/x.py:VARIANT:quick, or
# configs/x.py:quick for the default variant.
MODIFIERS = {'quick': make_quick}


def config_name(spec: str) -> str:
  """'configs/amp.py:fashion_mnist' -> 'amp_fashion_mnist'; 'configs/amp.py:fashion_mnist:quick'
  -> 'amp_fashion_mnist_quick'."""
  path, _, variant = spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return '_'.join([name, *filter(None, variant.split(':'))])
