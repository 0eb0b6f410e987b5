"""Declarative validation of `ml_collections.ConfigDict` experiment configs.

Every section of a config is checked against a schema before anything is compiled. A wrong name, type
or range raises `ConfigError` with one line naming the key, the value and what is allowed, e.g.::

    config.optimizer.learning_rate=-0.1: must be > 0

Components (models, losses, attacks, ...) declare the schema of their own section next to their code
(see `robust_jax.config.registry`), so adding a method never edits this file.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from robust_jax.arguments import float32_problem
from robust_jax.errors import UserError

__all__ = ['ConfigError', 'Field', 'Schema', 'boolean', 'check_section', 'integer', 'one_of',
           'positive_real', 'probability', 'real', 'seed', 'sequence_of', 'text']


class ConfigError(UserError, ValueError):
  """A config value is missing, unknown, of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class Field:
  """One config key: accepted Python types, a predicate on the value, and the text shown on error.

  `explain(value)`, when given, is the text shown for a value of the right type that fails the
  predicate (e.g. why a sequence's order matters); `allowed` otherwise.
  """

  types: tuple[type, ...]
  predicate: Callable[[Any], bool] = lambda value: True
  allowed: str = ''
  explain: Callable[[Any], str] | None = None

  def check(self, key: str, value: Any) -> None:
    type_ok = isinstance(value, self.types) and not (
        isinstance(value, bool) and bool not in self.types)
    if not type_ok:
      names = ' or '.join(t.__name__ for t in self.types)
      raise ConfigError(f'{key}={value!r}: must be of type {names}'
                        + (f' ({self.allowed})' if self.allowed else ''))
    if not self.predicate(value):
      raise ConfigError(f'{key}={value!r}: '
                        + (self.explain(value) if self.explain else self.allowed))


def integer(minimum: int | None = None, maximum: int | None = None, *, note: str = '') -> Field:
  """An int in [minimum, maximum]; `note` (why the range) is appended to the error."""
  text = _range_text(minimum, maximum)
  return Field((int,), lambda v: _in_range(v, minimum, maximum, False, False),
               f'{text} ({note})' if note else text)


def real(minimum: float | None = None, maximum: float | None = None, *,
         exclusive_minimum: bool = False, exclusive_maximum: bool = False,
         note: str = '') -> Field:
  """A finite float or int in the range that float32 holds; NaN, ±inf, and a nonzero number that
  float32 makes 0 or inf (1e-300, 1e300: the training computes in float32) are rejected.

  The error reads 'must be >= 0.0 and < 1.0 (finite)', or with `note` for a finite value out of
  range, 'must be >= 0.0 and < 1.0 (NOTE)', or `arguments.float32_problem`'s reason.
  """
  text = _range_text(minimum, maximum, exclusive_minimum, exclusive_maximum)
  allowed = f'{text} (finite)' if text else 'must be a finite number'
  in_range = lambda v: _in_range(v, minimum, maximum, exclusive_minimum, exclusive_maximum)

  def explain(value):
    if not _finite(value):
      return allowed
    if not in_range(value):
      return f'{text} ({note})' if note else allowed
    return float32_problem(value)

  return Field((float, int), lambda v: _finite(v) and in_range(v) and not float32_problem(v),
               allowed, explain)


def _finite(value) -> bool:
  try:
    return math.isfinite(value)
  except OverflowError:  # an int too large for a float
    return False


def positive_real(*, note: str = '') -> Field:
  return real(0.0, exclusive_minimum=True, note=note)


def probability(*, note: str = '') -> Field:
  return real(0.0, 1.0, note=note)


def seed() -> Field:
  """A PRNG seed: an int in [0, 2**32), all that `jax.random.key` keeps."""
  return integer(0, 2**32 - 1, note='jax.random.key keeps 32 bits: seed 2**32 draws the same '
                 'numbers as seed 0')


def boolean() -> Field:
  return Field((bool,), allowed='must be True or False')


def text() -> Field:
  return Field((str,), allowed='any string')


def one_of(*choices: str, note: str = '') -> Field:
  """One of `choices`; `note` is appended to the error, e.g. why an obvious value is missing."""
  return Field((str,), lambda v: v in choices,
               f'must be one of: {", ".join(choices)}' + (f' ({note})' if note else ''))


def sequence_of(item: Field, *, min_length: int = 0, max_length: int | None = None,
                allowed: str = '', order: str = '', unique: bool = False,
                note: str = '') -> Field:
  """A tuple or list of `item`s, `min_length` to `max_length` of them.

  order: '' (any), 'increasing' (each item > the one before) or 'non_decreasing' (a (low, high)
  range); unique: no item twice. `note` says why the order or uniqueness matters.
  """
  if order not in ('', 'increasing', 'non_decreasing'):
    raise ValueError(f'order={order!r}: must be one of: increasing, non_decreasing')

  def item_ok(value):
    return (isinstance(value, item.types) and item.predicate(value)
            and not (isinstance(value, bool) and bool not in item.types))

  def items_ok(values):
    return (min_length <= len(values) <= (len(values) if max_length is None else max_length)
            and all(item_ok(v) for v in values))

  def order_ok(values):
    pairs = list(zip(values, values[1:]))
    if order == 'increasing':
      return all(a < b for a, b in pairs)
    return order != 'non_decreasing' or all(a <= b for a, b in pairs)

  def unique_ok(values):
    return not unique or len(set(values)) == len(values)

  if max_length == min_length:
    size = f'a sequence of exactly {min_length} items'
  elif max_length is None:
    size = f'a sequence of at least {min_length} items' if min_length else 'a sequence'
  else:
    size = f'a sequence of {min_length} to {max_length} items'
  text = allowed or f'{size}, each {item.allowed or "/".join(t.__name__ for t in item.types)}'
  reason = f' ({note})' if note else ''

  def explain(values):
    if not items_ok(values):
      return text
    if not order_ok(values):
      return ('must be strictly increasing' if order == 'increasing'
              else 'must be (low, high) with low <= high') + reason
    repeated = next(v for i, v in enumerate(values) if v in values[:i])
    return f'must not repeat {repeated!r}{reason}'

  return Field((tuple, list), lambda v: items_ok(v) and order_ok(v) and unique_ok(v), text,
               explain)


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


def _in_range(value, minimum, maximum, exclusive_minimum, exclusive_maximum) -> bool:
  if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
    return False
  return maximum is None or (value < maximum if exclusive_maximum else value <= maximum)


def _range_text(minimum, maximum, exclusive_minimum=False, exclusive_maximum=False) -> str:
  low = None if minimum is None else f'{">" if exclusive_minimum else ">="} {minimum}'
  high = None if maximum is None else f'{"<" if exclusive_maximum else "<="} {maximum}'
  return 'must be ' + ' and '.join(t for t in (low, high) if t) if (low or high) else ''
