r"""Command-line overrides of a config: ``--config.KEY.PATH=VALUE``.

    python -m robust_jax.main --config=configs/erm.py:fashion_mnist --workdir=W \
        --config.adversary.epsilon=0.05 --config.adversary.name=pgd

`apply_overrides(config, ['adversary.name=pgd', 'adversary.epsilon=0.05'])` returns a new config in
two passes, whatever the order of the overrides:

  1. component switches: ``SECTION.name=NEW`` for `model` and the objective sections (targets, loss,
     adversary, weight_perturbation, feature_mask) replaces the section by NEW's registered
     defaults, so its keys exist (a switch to the component already there keeps the section);
  2. every other override sets one existing key.

A value is parsed with the type of the value it replaces, as `ml_collections.config_flags` does:
bool, int and float through absl's parsers, sequences as tuples (``"(0.02, 0.4)"``; a bare word is
a 1-tuple), strings left as written. An unknown key, a bad value or a whole section overridden is a
`ConfigError` of one line; ranges and combinations are left to `validation.validate_config`.
"""
from __future__ import annotations

import ast
import copy
import re
from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections.config_flags import tuple_parser

from robust_jax import models, objectives
from robust_jax.config import schema as config_schema
from robust_jax import methods  # noqa: F401  (registers every method)

PREFIX = '--config.'
SWITCHABLE = {'model': models.MODELS, **objectives.SECTIONS}
_PARSERS = {bool: flags.BooleanParser(), int: flags.IntegerParser(), float: flags.FloatParser(),
            tuple: tuple_parser.TupleParser(), list: tuple_parser.TupleParser()}


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """(argv without the ``--config.*`` overrides, the overrides as 'PATH=VALUE').

  `--config=FILE` itself stays in argv. An override without '=' is a `ConfigError`.
  """
  rest, overrides = [], []
  for arg in argv:
    if not arg.startswith(PREFIX):
      rest.append(arg)
    elif '=' not in arg:
      raise config_schema.ConfigError(f'{arg}: give a value, e.g. {arg}=VALUE')
    else:
      overrides.append(arg[len(PREFIX):])
  return rest, overrides


def split_overrides(text: str) -> list[str]:
  """'a.b=1,c.d=(1, 2)' -> ['a.b=1', 'c.d=(1, 2)']: one comma-separated flag value (the `--set`
  of experiments/benchmark.py and compare.py) split at the commas that start a KEY=."""
  return [part for part in re.split(r',\s*(?=[\w.]+=)', text.strip()) if part]


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """A copy of `config` with each 'PATH=VALUE' of `overrides` applied (switches first)."""
  config = copy.deepcopy(config)
  parsed = [_split(override) for override in overrides]
  switches = {path[0]: text for path, text in parsed if _is_switch(path)}
  for section, name in switches.items():
    current = config.get(section)
    if not isinstance(current, ml_collections.ConfigDict) or current.get('name') != name:
      with config.unlocked():
        config[section] = SWITCHABLE[section].default_section(f'config.{section}.name', name)
  for path, text in parsed:
    if _is_switch(path):
      continue
    parent, where = _parent_section(config, path), 'config.' + '.'.join(path)
    current = parent[path[-1]]
    if isinstance(current, ml_collections.ConfigDict):
      raise config_schema.ConfigError(
          f'{where}: is a section; override its keys, e.g. --{where}.{next(iter(current))}=...')
    with parent.ignore_type():
      parent[path[-1]] = _parse(where, text, current)
  return config


def _split(override: str) -> tuple[tuple[str, ...], str]:
  name, _, text = override.partition('=')
  return tuple(name.split('.')), text


def _is_switch(path: tuple[str, ...]) -> bool:
  return len(path) == 2 and path[0] in SWITCHABLE and path[1] == 'name'


def _parent_section(config, path: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The section holding the last key of `path`; a `ConfigError` for any key that does not exist."""
  section = config
  for depth, key in enumerate(path):
    where = 'config.' + '.'.join(path[:depth + 1])
    if not isinstance(section, ml_collections.ConfigDict):
      raise config_schema.ConfigError(f'{where}: config.{".".join(path[:depth])}={section!r} is a '
                                      'value, not a section')
    if key not in section:
      raise config_schema.ConfigError(
          f'{where}: unknown key; known keys: {", ".join(sorted(section.keys()))}')
    parent, section = section, section[key]
  return parent


def _parse(where: str, text: str, current):
  """`text` parsed with the type of `current`: absl's parser for bool/int/float, a tuple for a
  sequence, the text itself for a string, a Python literal (else the text) for anything else."""
  if isinstance(current, str):
    return text
  parser = _PARSERS.get(type(current))
  if parser is None:
    try:
      return ast.literal_eval(text)
    except (SyntaxError, ValueError):
      return text
  try:
    value = parser.parse(text)
  except ValueError:
    raise config_schema.ConfigError(f'{where}={text!r}: must be of type {type(current).__name__}, '
                                    f'like its current value {current!r}') from None
  if isinstance(current, (tuple, list)):
    _check_sequence(where, text, value, current)
  return value


def _check_sequence(where: str, text: str, value: tuple, current) -> None:
  """A `ConfigError` for a sequence override the tuple parser read as one string although it
  names several items or a tuple (commas, brackets or quotes inside: quoting went wrong on the
  command line, e.g. `--config.model.widths='"(8,16)"'`), or for strings where the current value
  holds numbers."""
  if len(value) == 1 and isinstance(value[0], str):
    item = value[0]
    inner = item.strip().strip('\'"').strip()
    bracketed = inner[:1] in '([' and inner[-1:] in ')]'
    if bracketed:
      inner = inner[1:-1]
    if bracketed or ',' in inner or inner != item:
      strings = bool(current) and all(isinstance(v, str) for v in current)
      intended = tuple(_item(piece.strip().strip('\'"'), strings)
                       for piece in inner.split(',') if piece.strip())
      raise config_schema.ConfigError(
          f'{where}={text!r}: read as the one string {item!r}; write a tuple in double quotes, '
          f'--{where}="{intended!r}"')
  numbers = bool(current) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  for v in current)
  if numbers and any(isinstance(v, str) for v in value):
    raise config_schema.ConfigError(
        f'{where}={text!r}: must be a tuple of numbers, like its current value '
        f'{tuple(current)!r}; e.g. --{where}="{tuple(current)!r}"')


def _item(text: str, strings: bool):
  """One item of a sequence written without brackets: the text for a sequence of strings, else
  the Python literal it spells (a number), else the text."""
  if strings:
    return text
  try:
    return ast.literal_eval(text)
  except (SyntaxError, ValueError):
    return text


__all__ = ['PREFIX', 'SWITCHABLE', 'apply_overrides', 'split_argv', 'split_overrides']
