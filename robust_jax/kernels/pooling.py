"""Max-pooling over non-overlapping windows as a reshape and a `max`, with `flax.linen.max_pool`'s
exact values and gradients; several times faster on XLA:CPU (issue #15).

For windows equal to the strides (k₁ × k₂ windows, the usual 2×2 pool), the input (..., H, W, C) is
padded with -inf as the `padding` asks, its trailing rows/columns that fill no whole window are
cropped (what VALID does), and
  y[..., i, j, c] = max_{a < k₁, b < k₂} x[..., k₁·i + a, k₂·j + b, c]
is `x.reshape(..., H/k₁, k₁, W/k₂, k₂, C).max(axis=(-4, -2))`. `flax.linen.max_pool` instead runs
XLA's `reduce_window`, whose gradient `select_and_scatter` is slow on XLA:CPU
(`experiments/xla_cpu_profile.md`). Overlapping windows (window ≠ strides) fall back to
`flax.linen.max_pool`.

Only XLA:CPU takes the reshape path: `lax.platform_dependent` picks it when the program is compiled
for CPU, and `flax.linen.max_pool` itself on GPU and TPU, where `select_and_scatter` was never shown
slow. Both branches are traced, but a program compiled for one platform keeps only that platform's
branch (XLA inlines the choice), so the other costs nothing at run time, and a GPU program computes
what flax's would (`tests/test_platform_lowering.py` lowers it for CUDA and TPU on a CPU machine).

Tie rule (that of `select_and_scatter` with `select=ge`, checked in `tests/kernels/test_pooling.py`): the
window's elements are visited in row-major order (a, then b), padding included, and
  selected ← element  unless  selected ≥ element,
starting from the first element. The whole tangent / cotangent of y[..., i, j, c] goes to the
selected element, the others get 0: on ties the FIRST maximum in row-major order. Comparisons with
NaN are false, so a NaN takes the selection from the element before it and loses it to the element
after it: it is selected only when visited last (a NaN followed only by padding sends the gradient
into the padding, where it is dropped, as in XLA). `jnp.max`'s own gradient would split ties
equally instead.

On CPU the rule is a `jax.custom_jvp`, so forward mode (`jax.jvp`, `jax.jacfwd`) works, and reverse
mode (`jax.grad`, `jax.vjp`) is its transpose: the cotangent broadcast over each window and kept
only at the selected element (a compare-and-select over the reshaped input, no scatter). Works under
`jit`, `vmap`, batch sharding (Auto or Explicit mesh axes) and in any floating dtype. Second
derivatives are 0. (flax's own forward mode, `select_and_gather_add`, can pick another tied element
than its reverse mode when windows are padded; on CPU both follow the reverse mode here, while GPU
and TPU programs run flax's own pool, forward mode included.)
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

__all__ = ['max_pool']

Padding = str | Sequence[tuple[int, int]]


def max_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: Padding = 'VALID') -> jax.Array:
  """`flax.linen.max_pool(x, window_shape, strides, padding)`, same values and gradients.

  x: (*batch, *spatial, features), len(spatial) == len(window_shape), any number of batch axes
  (none included). Returns (*batch, *pooled spatial, features). Takes the reshape path when
  `strides == window_shape` and compiled for CPU, else calls flax (strides default to 1, as in
  flax: pass them).
  """
  window = tuple(window_shape)
  strides = None if strides is None else tuple(strides)
  if x.ndim < len(window) + 1:
    raise ValueError(f'x.shape={x.shape}: must have {len(window)} spatial axes and a feature axis '
                     f'for window_shape={window}')
  if strides != window:
    return nn.max_pool(x, window, strides, padding)
  spatial_axes = range(x.ndim - 1 - len(window), x.ndim - 1)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads([x.shape[axis] for axis in spatial_axes], window, window, padding)
  else:
    pads = [tuple(pair) for pair in padding]
    if len(pads) != len(window) or any(len(pair) != 2 for pair in pads):
      raise ValueError(f"padding={padding!r}: must be 'SAME', 'VALID' or {len(window)} "
                       '(low, high) pairs')
  return lax.platform_dependent(
      x, cpu=functools.partial(_reshape_max_pool, window=window, pads=pads),
      default=functools.partial(nn.max_pool, window_shape=window, strides=strides,
                                padding=padding))


def _reshape_max_pool(x: jax.Array, window: tuple[int, ...],
                      pads: Sequence[tuple[int, int]]) -> jax.Array:
  """The CPU path: pad with -inf, crop to whole windows, max over each window's axes."""
  spatial_axes = range(x.ndim - 1 - len(window), x.ndim - 1)
  if any(pair != (0, 0) for pair in pads):
    config = [(0, 0, 0)] * x.ndim
    for axis, (low, high) in zip(spatial_axes, pads):
      config[axis] = (low, high, 0)
    x = lax.pad(x, jnp.array(-jnp.inf, x.dtype), config)
  whole_windows = [slice(0, x.shape[axis] - x.shape[axis] % size)
                   for axis, size in zip(spatial_axes, window)]
  x = x[(Ellipsis, *whole_windows, slice(None))]
  return _max_over_windows(x, window)


def _windows(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
  """(*batch, n₁·k₁, ..., C) -> (*batch, n₁, k₁, n₂, k₂, ..., C): each window on its own axes.

  A sharded spatial axis stays sharded on its n axis (spelled out for meshes with Explicit axes).
  """
  num_batch = x.ndim - 1 - len(window)
  split = [d for size, k in zip(x.shape[num_batch:-1], window) for d in (size // k, k)]
  sharding = jax.typeof(x).sharding
  spec = tuple(sharding.spec) + (None,) * x.ndim
  split_spec = [s for axis_spec in spec[num_batch:x.ndim - 1] for s in (axis_spec, None)]
  out_spec = P(*spec[:num_batch], *split_spec, spec[x.ndim - 1])
  return lax.reshape(x, (*x.shape[:num_batch], *split, x.shape[-1]),
                     out_sharding=sharding.update(spec=out_spec))


def _window_axes(x: jax.Array, window: tuple[int, ...]) -> tuple[int, ...]:
  """The k axes of `_windows(x, window)`."""
  first = x.ndim - 1 - len(window)
  return tuple(first + 2 * i + 1 for i in range(len(window)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_over_windows(x: jax.Array, window: tuple[int, ...]) -> jax.Array:
  """Max over each window of x, whose spatial sizes are multiples of `window`."""
  return _windows(x, window).max(axis=_window_axes(x, window))


@_max_over_windows.defjvp
def _max_over_windows_jvp(window, primals, tangents):
  (x,), (x_dot,) = primals, tangents
  axes = _window_axes(x, window)
  windows = _windows(x, window)
  selected = _selection_mask(windows, axes, window)
  y_dot = jnp.where(selected, _windows(x_dot, window), 0).sum(axis=axes)
  return _max_over_windows(x, window), y_dot


def _selection_mask(windows: jax.Array, axes: tuple[int, ...],
                    window: tuple[int, ...]) -> jax.Array:
  """Boolean, shaped like `windows`: True at the one element per window the tie rule selects
  (module docstring), found by visiting the window's positions in row-major order."""
  def element(position):
    index = [slice(None)] * windows.ndim
    for axis, offset in zip(axes, np.unravel_index(position, window)):
      index[axis] = int(offset)
    return windows[tuple(index)]

  selected_value = element(0)
  selected_position = jnp.zeros(selected_value.shape, jnp.int32)
  for position in range(1, int(np.prod(window))):
    value = element(position)
    replace = ~(selected_value >= value)
    selected_value = jnp.where(replace, value, selected_value)
    selected_position = jnp.where(replace, position, selected_position)
  position_shape = [1] * windows.ndim
  for axis, size in zip(axes, window):
    position_shape[axis] = size
  positions = np.arange(int(np.prod(window)), dtype=np.int32).reshape(position_shape)
  return jnp.expand_dims(selected_position, axes) == positions
