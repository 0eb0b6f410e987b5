"""Checks of the arguments of robust_jax's pure functions: attacks, methods, losses and models.

Each check runs in Python when the function is called (or traced), never per step: the compiled
computation is the same with and without them. Static properties are always checked, also while
tracing under `jax.jit`, `jax.vmap` or `jax.grad`: names (one of a fixed set of choices), flags,
integer counts, callables, PRNG keys, and the shapes and dtypes of arrays. Values are checked only
where they are concrete, i.e. a Python number or an array that is not a `jax.core.Tracer`: a
traced ε, traced labels or traced images are accepted unchecked. A concrete array is reduced on
its device (also while an outer `jit` traces, `jax.ensure_compile_time_eval`), then compared in
Python.

Every error is one line naming the argument, the value passed and what is expected, e.g.
`epsilon=-0.1: must be a finite number >= 0` or `labels: values range over [1, 4]; must be class
indices in [0, 3] (logits_fn gives C = 4)`. Wrong types raise TypeError, wrong values ValueError.

The attacks' own checks (`robust_jax.attacks.arguments`) are built from these.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
import numbers
import operator

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['PIXEL_HINT', 'check_callable', 'check_choice', 'check_class_indices', 'check_count',
           'check_distributions', 'check_finite', 'check_flag', 'check_float_array',
           'check_float_tree', 'check_image_array', 'check_index_array', 'check_index_range',
           'check_int_range', 'check_key', 'check_mapping', 'check_number', 'check_pair',
           'check_paths',
           'check_pixel_values', 'check_similarity_matrix', 'check_token_ids', 'float32_problem',
           'is_concrete', 'show', 'value_range']

PIXEL_HINT = 'pixel values in [0, 1] (e.g. uint8 images / 255)'
# How far a row of a concrete probability matrix may sum from 1, and a similarity diagonal from 0
# (`class_similarity.load_similarity` uses the same).
ROW_SUM_TOLERANCE = 1e-4
DIAGONAL_TOLERANCE = 1e-6
# Distributions computed in float32 (softmax, label smoothing) sum to 1 within ~1e-6 per class.
DISTRIBUTION_TOLERANCE = 1e-3


def is_concrete(value) -> bool:
  """True when `value` can be read now: not a tracer of jax.jit, jax.vmap or jax.grad."""
  return not isinstance(value, jax.core.Tracer)


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


def check_int_range(name: str, value, low: int, high: int, hint: str = '') -> int:
  """`value` is a static int in [low, high]; returns it. `hint` ends the message (e.g. why)."""
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


def value_range(array) -> tuple[float, float]:
  """(min, max) of a concrete array, reduced on its device also while an outer jit traces."""
  with jax.ensure_compile_time_eval():
    return float(jnp.min(array)), float(jnp.max(array))


def _dtype_text(value) -> str:
  return str(getattr(value, 'dtype', type(value).__name__))


def check_float_array(name: str, value, shape: str | None = None, ndim: int | None = None,
                      what: str = '') -> None:
  """`value` is a floating-point array; with `ndim`, of that rank, `shape` naming the expected
  shape in the message (e.g. '(B, C), the logits of a batch'). `what` ends the dtype message."""
  if not hasattr(value, 'dtype') or not jnp.issubdtype(value.dtype, jnp.floating):
    raise TypeError(f'{name}.dtype={_dtype_text(value)}: must be floating point{what}')
  if ndim is not None and value.ndim != ndim:
    raise ValueError(f'{name}.shape={tuple(value.shape)}: must be {shape}')


def check_finite(name: str, value) -> None:
  """Where concrete, every entry of the float array `value` is finite."""
  if is_concrete(value) and value.size:
    low, high = value_range(value)
    if not (np.isfinite(low) and np.isfinite(high)):
      raise ValueError(f'{name}: values range over [{low:g}, {high:g}]; must be finite')


def check_distributions(name: str, value, what: str = 'probability distributions') -> None:
  """Where concrete, the rows of `value` (along its last axis) are probability distributions:
  entries >= 0 summing to 1 (within DISTRIBUTION_TOLERANCE)."""
  if not (is_concrete(value) and value.size):
    return
  with jax.ensure_compile_time_eval():
    low = float(jnp.min(value))
    sums = jnp.sum(value, axis=-1, dtype=jnp.float32)
    low_sum, high_sum = float(jnp.min(sums)), float(jnp.max(sums))
  if not (low >= 0.0 and abs(low_sum - 1.0) <= DISTRIBUTION_TOLERANCE
          and abs(high_sum - 1.0) <= DISTRIBUTION_TOLERANCE):
    raise ValueError(f'{name}: smallest entry {low:g}, rows sum to [{low_sum:g}, {high_sum:g}]; '
                     f'must be {what} (entries >= 0, each row over the last axis summing to 1)')


def check_similarity_matrix(name: str, value) -> int:
  """`value` is S̃ (C, C) of real numbers; where concrete: entries >= 0, rows summing to 1
  (within ROW_SUM_TOLERANCE) and a zero diagonal (within DIAGONAL_TOLERANCE). Returns C."""
  dtype = getattr(value, 'dtype', None)
  if dtype is None or not (jnp.issubdtype(dtype, jnp.floating)
                           or jnp.issubdtype(dtype, jnp.integer)):
    raise TypeError(f'{name}.dtype={_dtype_text(value)}: must be a real (C, C) matrix, '
                    'e.g. a NumPy array')
  shape = tuple(value.shape)
  if len(shape) != 2 or shape[0] != shape[1]:
    raise ValueError(f'{name}.shape={shape}: must be (C, C), one row per class')
  if not (is_concrete(value) and value.size):
    return shape[0]
  matrix = np.asarray(value, np.float64)
  sums, diagonal = matrix.sum(axis=1), np.abs(np.diag(matrix))
  if not matrix.min() >= 0.0:
    raise ValueError(f'{name}: smallest entry {matrix.min():g}; must be non-negative '
                     '(row y: how similar each other class is to class y)')
  if not np.all(np.abs(sums - 1.0) <= ROW_SUM_TOLERANCE):
    row = int(np.argmax(np.abs(sums - 1.0)))
    raise ValueError(f'{name}: row {row} sums to {sums[row]:g}; every row must sum to 1 '
                     '(a distribution over the other classes)')
  if not diagonal.max() <= DIAGONAL_TOLERANCE:
    row = int(np.argmax(diagonal))
    raise ValueError(f'{name}: diagonal entry [{row}, {row}] is {matrix[row, row]:g}; must be 0 '
                     '(the true class gets 1 - alpha through S = (1 - alpha) I + alpha S̃)')
  return shape[0]


def check_float_tree(name: str, tree) -> None:
  """`tree` is a non-empty pytree whose leaves are all floating-point arrays."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  if not leaves:
    raise ValueError(f'{name}: an empty pytree; must hold the float arrays to perturb')
  for path, leaf in leaves:
    if not hasattr(leaf, 'dtype') or not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(f'{name}{jax.tree_util.keystr(path)}.dtype={_dtype_text(leaf)}: must be '
                      'floating point (every leaf is perturbed)')


def check_paths(name: str, paths) -> tuple[str, ...]:
  """`paths` is a sequence of strings (a bare string is refused: it would be read as characters);
  returns it as a tuple."""
  if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence) or not all(
      isinstance(p, str) for p in paths):
    raise TypeError(f"{name}={_describe_array(paths)}: must be a sequence of '/'-joined "
                    "parameter paths, e.g. ('Dense_0/kernel',)")
  return tuple(paths)


def check_image_array(name: str, images) -> None:
  """`images` is a floating-point array (B, ...) with a batch axis and at least one more axis."""
  if not hasattr(images, 'dtype') or not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f'{name}.dtype={_dtype_text(images)}: must be floating point with '
                    f'{PIXEL_HINT}')
  if images.ndim < 2:
    raise ValueError(f'{name}.shape={tuple(images.shape)}: must be (B, ...) with a batch axis '
                     'first and at least one feature axis')


def check_pixel_values(name: str, images, slack: float = 0.0) -> None:
  """Where concrete, every entry of `images` lies in [0, 1], or in [-slack, 1 + slack] for inputs
  that may be perturbed without clipping (NaN and infinities are refused)."""
  if is_concrete(images) and images.size:
    low, high = value_range(images)
    if not (low >= -slack and high <= 1.0 + slack):
      allowance = f', perturbed by at most {slack:g}' if slack else ''
      raise ValueError(f'{name}: values range over [{low:g}, {high:g}]; must be {PIXEL_HINT}'
                       f'{allowance}')


def check_index_array(name: str, values, batch: int) -> None:
  """`values` is an integer array of shape (B,)."""
  if not hasattr(values, 'dtype') or not jnp.issubdtype(values.dtype, jnp.integer):
    raise TypeError(f'{name}.dtype={_dtype_text(values)}: must be an integer type '
                    '(class indices)')
  if tuple(values.shape) != (batch,):
    raise ValueError(f'{name}.shape={tuple(values.shape)}: must be (B,) = ({batch},), one class '
                     'index per image')


def check_index_range(name: str, values, num_classes: int, source: str = 'logits_fn gives') -> None:
  """Where concrete, every entry of `values` lies in [0, C); `source` names where C comes from."""
  if is_concrete(values) and values.size:
    low, high = (int(v) for v in value_range(values))
    if low < 0 or high >= num_classes:
      raise ValueError(f'{name}: values range over [{low}, {high}]; must be class indices in '
                       f'[0, {num_classes - 1}] ({source} C = {num_classes})')


def check_class_indices(name: str, values, batch: int, num_classes: int,
                        source: str = 'logits_fn gives') -> None:
  """`values` (B,) integer class indices in [0, C) (the range is checked where concrete)."""
  check_index_array(name, values, batch)
  check_index_range(name, values, num_classes, source)


def check_token_ids(name: str, tokens, vocab_size: int) -> None:
  """`tokens` (B, L) integer token ids; where concrete, in [0, vocab_size)."""
  if not hasattr(tokens, 'dtype') or not jnp.issubdtype(tokens.dtype, jnp.integer):
    raise TypeError(f'{name}.dtype={_dtype_text(tokens)}: a text model takes integer token ids '
                    '(B, L); images or [0, 1] floats are for image models')
  if tokens.ndim != 2:
    raise ValueError(f'{name}.shape={tuple(tokens.shape)}: must be (B, L), a batch of token id '
                     'sequences')
  if is_concrete(tokens) and tokens.size:
    low, high = (int(v) for v in value_range(tokens))
    if low < 0 or high >= vocab_size:
      raise ValueError(f'{name}: values range over [{low}, {high}]; must be token ids in '
                       f'[0, {vocab_size - 1}] (vocab_size = {vocab_size})')


def check_mapping(name: str, value, expected: str) -> None:
  """`value` is a Mapping (e.g. a dict of parameters); `expected` says what it must be."""
  if not isinstance(value, Mapping):
    raise TypeError(f'{name}={type(value).__name__}: must be {expected}')

