"""A drop-in `lax.conv_general_dilated` for a CNN's first layer, whose input gradient is fast on
XLA:CPU.

Attacks and adversarial training differentiate the loss with respect to the images. For the first
convolution, y = conv(x, w) with x (B, H, W, C_in) and few input channels (1 for grayscale, 3 for
RGB), JAX transposes conv(dx, w) into another convolution, one with C_in output channels, which
XLA:CPU runs slowly. Written with the image patches instead,

    conv(dx, w)[n, i, j, o] = Σ_{a, b, c} dx_pad[n, i + a, j + b, c] · w[a, b, c, o]
                            = patches(dx) (B, H', W', k₁·k₂·C_in) @ w.reshape(k₁·k₂·C_in, C_out),

the same linear map transposes into a matmul and k₁·k₂ shifted adds. `conv` is a `jax.custom_jvp`
whose primal and weight tangent are XLA's convolution (so values and weight gradients are XLA's)
and whose input tangent is the patches form (so input gradients differ from XLA's only in the
order of summation, ~1e-7 relative). Measured on the Fashion-MNIST CNN, batch 500, 2 CPU cores:
the input gradient of the whole model 210 → 145 ms (README, Benchmark).

Only stride 1, no dilation, one feature group, NHWC / HWIO and at most `MAX_INPUT_CHANNELS` input
channels take this path, and only when the program is compiled for CPU (`lax.platform_dependent`: a
program compiled for one platform keeps only its branch); anything else, and every GPU or TPU
program, computes `lax.conv_general_dilated` itself (`tests/test_platform_lowering.py` lowers the
CNN for CUDA and TPU on a CPU machine). Pass it to Flax as `nn.Conv(...,
conv_general_dilated=input_conv.conv)`: the parameters stay those of `nn.Conv`.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

__all__ = ['MAX_INPUT_CHANNELS', 'conv']

# Measured faster with 1 and 3 input channels; the CNN's second conv (32) keeps XLA's transpose.
# Between 4 and 32 channels the crossover was not measured.
MAX_INPUT_CHANNELS = 4
_LAYOUTS = {1: ('NWC', 'WIO', 'NWC'), 2: ('NHWC', 'HWIO', 'NHWC')}


def conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
         dimension_numbers=None, feature_group_count=1, precision=None,
         preferred_element_type=None):
  """`lax.conv_general_dilated` with the same arguments and values; the input tangent in the
  patches form where that applies (module docstring)."""
  xla = functools.partial(lax.conv_general_dilated, window_strides=window_strides,
                          padding=padding, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                          dimension_numbers=dimension_numbers,
                          feature_group_count=feature_group_count, precision=precision,
                          preferred_element_type=preferred_element_type)
  spatial = lhs.ndim - 2
  ones = (1,) * spatial
  applies = (spatial in _LAYOUTS and tuple(window_strides) == ones
             and tuple(lhs_dilation or ones) == ones and tuple(rhs_dilation or ones) == ones
             and feature_group_count == 1 and rhs.shape[-2] <= MAX_INPUT_CHANNELS
             and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                                                  _LAYOUTS[spatial]))
  if not applies:
    return xla(lhs, rhs)
  pads = (lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], ones, padding)
          if isinstance(padding, str) else tuple(map(tuple, padding)))
  patches_conv = functools.partial(_patches_conv, pads=pads, precision=precision,
                                   preferred_element_type=preferred_element_type)
  return lax.platform_dependent(lhs, rhs, cpu=functools.partial(_conv, xla, patches_conv),
                                default=xla)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _conv(xla, patches_conv, x, w):
  del patches_conv
  return xla(x, w)


def _conv_jvp(xla, patches_conv, primals, tangents):
  """Tangent conv(dx, w) + conv(x, dw): the first as patches, the second XLA's; each only where
  its tangent is not a symbolic zero (a weight gradient never forms the patches)."""
  (x, w), (dx, dw) = primals, tangents
  parts = ([] if isinstance(dx, SymbolicZero) else [patches_conv(dx, w)]) + (
      [] if isinstance(dw, SymbolicZero) else [xla(x, dw)])
  return xla(x, w), functools.reduce(jnp.add, parts)


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


def _patches_conv(x, w, *, pads, precision, preferred_element_type):
  """conv(x, w) (B, *out, C_out) as patches (B, *out, k·C_in) @ w (k·C_in, C_out): stride 1,
  channels last, x (B, *spatial, C_in), w (*kernel, C_in, C_out), pads ((lo, hi), ...) per axis."""
  kernel = w.shape[:-2]
  padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  out = [size - k + 1 for size, k in zip(padded.shape[1:-1], kernel)]
  patches = jnp.concatenate(
      [padded[(slice(None), *(slice(o, o + n) for o, n in zip(offset, out)))]
       for offset in itertools.product(*map(range, kernel))], -1)  # row-major, as w's rows
  return jnp.matmul(patches, w.reshape(-1, w.shape[-1]), precision=precision,
                    preferred_element_type=preferred_element_type)
