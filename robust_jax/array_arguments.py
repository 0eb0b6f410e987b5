"""Checks of the array arguments of robust_jax's pure functions: dtypes, shapes and, where
concrete, values (images, class indices, logits, distributions, similarity matrices, token ids,
pytrees of float arrays).

Part of `robust_jax.arguments` (which names every check, these included, and states the rules they
follow). A concrete array is reduced on its device (also while an outer `jit` traces,
`jax.ensure_compile_time_eval`), then compared in Python; a traced array is checked for its shape
and dtype only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['DIAGONAL_TOLERANCE', 'DISTRIBUTION_TOLERANCE', 'PIXEL_HINT', 'ROW_SUM_TOLERANCE',
           'check_class_indices', 'check_distributions', 'check_finite', 'check_float_array',
           'check_float_tree', 'check_image_array', 'check_index_array', 'check_index_range',
           'check_pixel_values', 'check_similarity_matrix', 'check_token_ids', 'is_concrete',
           'value_range']

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
