"""Checks of the arguments of robust_jax's pure functions: attacks, methods, losses and models.

Each check runs in Python when the function is called (or traced), never per step: the compiled
computation is the same with and without them. Static properties are always checked, also while
tracing under `jax.jit`, `jax.vmap` or `jax.grad`: names (one of a fixed set of choices), flags,
integer counts, callables, PRNG keys, and the shapes and dtypes of arrays. Values are checked only
where they are concrete, i.e. a Python number or an array that is not a `jax.core.Tracer`: a
traced ε, traced labels or traced images are accepted unchecked.

Every error is one line naming the argument, the value passed and what is expected, e.g.
`epsilon=-0.1: must be a finite number >= 0` or `labels: values range over [1, 4]; must be class
indices in [0, 3] (logits_fn gives C = 4)`. Wrong types raise TypeError, wrong values ValueError.

The attacks' own checks (`robust_jax.attacks.arguments`) are built from these.

This module checks names, flags, integer counts, numbers, pairs of numbers, callables, PRNG keys,
parameter paths and mappings. The checks of arrays (dtypes, shapes, value ranges) are
`robust_jax.array_arguments`; they are named here too, since the callers (and the test that
replaces every check by a no-op) reach every check as `arguments.check_*`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
import numbers
import operator

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.array_arguments import (DIAGONAL_TOLERANCE, PIXEL_HINT, ROW_SUM_TOLERANCE,
                                        check_class_indices, check_distributions, check_finite,
                                        check_float_array, check_float_tree, check_image_array,
                                        check_index_array, check_index_range, check_pixel_values,
                                        check_similarity_matrix, check_token_ids, is_concrete,
                                        value_range)

__all__ = ['DIAGONAL_TOLERANCE', 'PIXEL_HINT', 'ROW_SUM_TOLERANCE', 'check_callable',
           'check_choice', 'check_class_indices', 'check_count', 'check_distributions',
           'check_finite', 'check_flag', 'check_float_array', 'check_float_tree',
           'check_image_array', 'check_index_array', 'check_index_range', 'check_int_range',
           'check_key', 'check_mapping', 'check_number', 'check_pair', 'check_paths',
           'check_pixel_values', 'check_similarity_matrix', 'check_token_ids', 'float32_problem',
           'is_concrete', 'show', 'value_range']


def _is_key_array(value) -> bool:
  dtype = getattr(value, 'dtype', None)
  return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def show(value) -> str:
  """A one-line rendering of a scalar argument: repr for Python values, the number for arrays."""
  if isinstance(value, (numbers.Number, str)) or value is None:
    return repr(value)
  if is_concrete(value) and not _is_key_array(value) and np.ndim(value) == 0:
    return repr(np.asarray(value).item())
  return f'{type(value).__name__} of shape {tuple(np.shape(value))}'


def _describe_array(value) -> str:
  """'ArrayImpl of dtype int32 and shape (2,)' for arrays, repr for short Python values."""
  if hasattr(value, 'dtype') and hasattr(value, 'shape'):
    return f'{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}'
  text = repr(value)
  return text if len(text) <= 40 else type(value).__name__


def check_choice(name: str, value, choices: Sequence[str]) -> None:
  """`value` is one of `choices` (case-exact)."""
  if not isinstance(value, str) or value not in choices:
    listed = ', '.join(repr(c) for c in choices)
    raise ValueError(f'{name}={show(value)}: must be one of {listed}')


def check_flag(name: str, value) -> None:
  """`value` is True or False (a Python or NumPy bool; a string such as 'yes' is refused)."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f'{name}={show(value)}: must be True or False')


def _static_int(value) -> int | None:
  """`value` as a Python int if it is a static Python or NumPy integer (not a bool), else None."""
  try:
    return None if isinstance(value, (bool, np.bool_)) else operator.index(value)
  except TypeError:
    return None


def check_count(name: str, value) -> int:
  """`value` is an int >= 1 (Python or NumPy, static: a traced count is refused); returns it."""
  count = _static_int(value)
  if count is None:
    raise TypeError(f'{name}={show(value)}: must be an int >= 1 (a static Python int)')
  if count < 1:
    raise ValueError(f'{name}={count}: must be an int >= 1')
  return count


def check_int_range(name: str, value, low: int, high: int, hint: str = '', *,
                    traced: bool = False):
  """`value` is a static int in [low, high]; returns it. `hint` ends the message (e.g. why).

  With `traced`, an integer scalar traced by jax.jit also passes, unchecked (its value is not known
  while tracing), and is returned as it is.
  """
  if traced and isinstance(value, jax.core.Tracer) and value.shape == () and jnp.issubdtype(
      value.dtype, jnp.integer):
    return value
  number = _static_int(value)
  if number is None or not low <= number <= high:
    raise (TypeError if number is None else ValueError)(
        f'{name}={show(value)}: must be an int in [{low}, {high}]{hint}')
  return number


def check_number(name: str, value, minimum: float, *, strict: bool = False,
                 maximum: float | None = None, static: bool = False) -> None:
  """`value` is a real scalar; where concrete, finite and in [minimum, maximum] (or > minimum), and
  held by float32 (`float32_problem`: 1e300 would be inf, 1e-300 would be 0).

  A traced scalar passes unchecked (its value is not known while tracing), unless `static`: then
  it is refused, for a number that decides the computation's structure (e.g. whether to clip).
  """
  is_real_array = hasattr(value, 'dtype') and (jnp.issubdtype(value.dtype, jnp.floating)
                                               or jnp.issubdtype(value.dtype, jnp.integer))
  if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Real) or is_real_array):
    raise TypeError(f'{name}={show(value)}: must be a real number')
  if np.ndim(value) != 0:
    raise ValueError(f'{name}.shape={tuple(np.shape(value))}: must be a scalar')
  if not is_concrete(value):
    if static:
      raise TypeError(f'{name}: must be a static Python number (it fixes the computation when '
                      'tracing), not a traced value')
    return
  try:
    number = float(value)
  except OverflowError:  # a Python int too large for a float
    number = float('inf')
  low_ok = number > minimum if strict else number >= minimum
  if not (np.isfinite(number) and low_ok and (maximum is None or number <= maximum)):
    expected = (f'in {"(" if strict else "["}{minimum:g}, {maximum:g}]' if maximum is not None
                else f'{">" if strict else ">="} {minimum:g}')
    raise ValueError(f'{name}={show(value)}: must be a finite number {expected}')
  problem = float32_problem(number)
  if problem:
    raise ValueError(f'{name}={show(value)}: {problem}')


def float32_problem(number: float) -> str:
  """'' when float32, the dtype robust_jax computes in, holds the finite `number` (0 stays 0, any
  other number stays nonzero and finite); else what it must be, e.g. 'must be 0 or a number
  float32 holds (float32 makes it 0.0; ...)' for 1e-300."""
  with np.errstate(over='ignore'):
    single = np.float32(number)
  if number and not single:
    return (f'must be 0 or a number float32 holds (float32 makes it 0.0; the smallest nonzero '
            f'float32 is {np.finfo(np.float32).smallest_subnormal:.2g})')
  if not np.isfinite(single):
    return (f'must be a number float32 holds (float32 makes it {single}; the largest float32 is '
            f'{np.finfo(np.float32).max:.2g})')
  return ''


def check_pair(name: str, value, minimum: float, *, strict: bool = False,
               maximum: float | None = None) -> None:
  """`value` is (low, high), two numbers each checked by `check_number`, with low <= high."""
  if isinstance(value, (str, bytes)) or not hasattr(value, '__len__') or len(value) != 2:
    raise TypeError(f'{name}={_describe_array(value)}: must be a pair (low, high)')
  low, high = value[0], value[1]
  check_number(f'{name}[0]', low, minimum, strict=strict, maximum=maximum)
  check_number(f'{name}[1]', high, minimum, strict=strict, maximum=maximum)
  if is_concrete(low) and is_concrete(high) and float(low) > float(high):
    raise ValueError(f'{name}=({float(low):g}, {float(high):g}): must be (low, high) with '
                     'low <= high')


def check_callable(name: str, value, expected: str) -> None:
  """`value` is callable; `expected` says what it must be, e.g. 'a function params -> loss'."""
  if not callable(value):
    raise TypeError(f'{name}={type(value).__name__}: must be {expected}')


def check_key(key, name: str = 'key', purpose: str = 'draws random starts') -> None:
  """`key` is one PRNG key: a typed key of shape () (`jax.random.key`) or a raw uint32 key
  (`jax.random.PRNGKey`). `purpose` completes the message for None, e.g. 'draws the masks'."""
  if key is None:
    raise ValueError(f'{name}=None: this call {purpose} and needs a PRNG key '
                     '(e.g. jax.random.key(0))')
  if _is_key_array(key):
    if key.ndim != 0:
      raise ValueError(f'{name}.shape={tuple(key.shape)}: must be one PRNG key (shape ()); '
                       'for a batch of keys use jax.vmap')
    return
  if getattr(key, 'dtype', None) == np.uint32 and np.ndim(key) == 1:  # jax.random.PRNGKey
    return
  raise TypeError(f'{name}={_describe_array(key)}: must be a PRNG key (e.g. jax.random.key(0))')


def check_paths(name: str, paths) -> tuple[str, ...]:
  """`paths` is a sequence of strings (a bare string is refused: it would be read as characters);
  returns it as a tuple."""
  if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence) or not all(
      isinstance(p, str) for p in paths):
    raise TypeError(f"{name}={_describe_array(paths)}: must be a sequence of '/'-joined "
                    "parameter paths, e.g. ('Dense_0/kernel',)")
  return tuple(paths)


def check_mapping(name: str, value, expected: str) -> None:
  """`value` is a Mapping (e.g. a dict of parameters); `expected` says what it must be."""
  if not isinstance(value, Mapping):
    raise TypeError(f'{name}={type(value).__name__}: must be {expected}')
