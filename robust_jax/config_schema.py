"""Declarative validation of `ml_collections.ConfigDict` experiment configs.

Every section of a config is checked against a schema before anything is compiled. A wrong name, type
or range raises `ConfigError` with one line naming the key, the value and what is allowed, e.g.::

    config.optimizer.learning_rate=-0.1: must be > 0

Components (models, losses, attacks, ...) declare the schema of their own section next to their code
(see `robust_jax.registry`), so adding a method never edits this file.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from robust_jax.errors import UserError

__all__ = ['ConfigError', 'Field', 'Schema', 'boolean', 'check_section', 'integer', 'one_of',
           'positive_real', 'probability', 'real', 'sequence_of', 'text']


class ConfigError(UserError, ValueError):
  """A config value is missing, unknown, of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class Field:
  """One config key: accepted Python types, a predicate on the value, and the text shown on error."""

  types: tuple[type, ...]
  predicate: Callable[[Any], bool] = lambda value: True
  allowed: str = ''

  def check(self, key: str, value: Any) -> None:
    type_ok = isinstance(value, self.types) and not (
        isinstance(value, bool) and bool not in self.types)
    if not type_ok:
      names = ' or '.join(t.__name__ for t in self.types)
      raise ConfigError(f'{key}={value!r}: must be of type {names}'
                        + (f' ({self.allowed})' if self.allowed else ''))
    if not self.predicate(value):
      raise ConfigError(f'{key}={value!r}: {self.allowed}')


def integer(minimum: int | None = None, maximum: int | None = None) -> Field:
  return Field((int,), lambda v: _in_range(v, minimum, maximum, False), _range_text(minimum, maximum))


def real(minimum: float | None = None, maximum: float | None = None, *,
         exclusive_minimum: bool = False) -> Field:
  """A finite float or int in the range; NaN and ±inf are rejected."""
  text = _range_text(minimum, maximum, exclusive_minimum)
  text = f'{text} (finite)' if text else 'must be a finite number'
  return Field((float, int), lambda v: math.isfinite(v) and _in_range(
      v, minimum, maximum, exclusive_minimum), text)


def positive_real() -> Field:
  return real(0.0, exclusive_minimum=True)


def probability() -> Field:
  return real(0.0, 1.0)


def boolean() -> Field:
  return Field((bool,), allowed='must be True or False')


def text() -> Field:
  return Field((str,), allowed='any string')


def one_of(*choices: str, note: str = '') -> Field:
  """One of `choices`; `note` is appended to the error, e.g. why an obvious value is missing."""
  return Field((str,), lambda v: v in choices,
               f'must be one of: {", ".join(choices)}' + (f' ({note})' if note else ''))


def sequence_of(item: Field, *, min_length: int = 0, max_length: int | None = None,
                allowed: str = '') -> Field:
  def ok(values):
    return (min_length <= len(values) <= (len(values) if max_length is None else max_length)
            and all(isinstance(v, item.types) and item.predicate(v) for v in values))
  if max_length == min_length:
    size = f'exactly {min_length} items'
  elif max_length is None:
    size = f'at least {min_length} items'
  else:
    size = f'{min_length} to {max_length} items'
  return Field((tuple, list), ok, allowed or f'a sequence of {size}, each '
               f'{item.allowed or "/".join(t.__name__ for t in item.types)}')


Schema = Mapping[str, Field]


def check_section(prefix: str, section: Any, schema: Schema) -> None:
  """Checks that `section` has exactly the keys of `schema`, each with an allowed value."""
  if not isinstance(section, (ml_collections.ConfigDict, dict)):
    raise ConfigError(f'{prefix}={section!r}: must be a ConfigDict section')
  present = set(section.keys())
  unknown = sorted(present - set(schema))
  if unknown:
    raise ConfigError(f'{prefix}.{unknown[0]}: unknown key; known keys: {", ".join(sorted(schema))}')
  missing = sorted(set(schema) - present)
  if missing:
    raise ConfigError(f'{prefix}.{missing[0]}: missing required key')
  for key, field in schema.items():
    field.check(f'{prefix}.{key}', section[key])


def _in_range(value, minimum, maximum, exclusive_minimum) -> bool:
  if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
    return False
  return maximum is None or value <= maximum


def _range_text(minimum, maximum, exclusive_minimum=False) -> str:
  low = None if minimum is None else f'{">" if exclusive_minimum else ">="} {minimum}'
  high = None if maximum is None else f'<= {maximum}'
  return 'must be ' + ' and '.join(t for t in (low, high) if t) if (low or high) else ''
