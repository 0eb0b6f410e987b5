"""PyTorch's layer initialisers and conv padding, for models that follow official PyTorch code.

Flax and PyTorch start layers differently (Flax: lecun_normal kernels, zero biases, 'SAME'
padding). The CIFAR models follow the official AMP code (hiyouga/AMP-Regularizer, models/*.py,
papers.md 1.5), so they build their layers from these:

* `KAIMING_NORMAL_FAN_OUT`: `nn.init.kaiming_normal_(w, mode='fan_out', nonlinearity='relu')`,
  w ~ N(0, 2 / fan_out), fan_out = k·k·out_channels (a plain normal, not truncated).
* `DEFAULT_KERNEL_INIT`: the weight of a default-initialised `nn.Conv2d` / `nn.Linear`,
  `kaiming_uniform_(w, a=√5)`: w ~ U(-1/√fan_in, 1/√fan_in), fan_in = k·k·in_channels
  (in_features for a Linear), so std(w) = 1/√(3 fan_in).
* `default_bias_init(fan_in)`: the bias of a default-initialised `nn.Conv2d` / `nn.Linear`,
  b ~ U(-1/√fan_in, 1/√fan_in) with the weight's fan_in.
* `conv2d(...)`: `nn.Conv2d(in, out, k, stride, padding=k // 2, bias)`: explicit symmetric
  padding ((k//2, k//2), (k//2, k//2)). Flax's 'SAME' pads a stride-2 3×3 conv on an even size by
  (0, 1) instead of (1, 1), which moves the sampling grid by a pixel.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

Initializer = nn.initializers.Initializer

KAIMING_NORMAL_FAN_OUT: Initializer = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
DEFAULT_KERNEL_INIT: Initializer = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def default_bias_init(fan_in: int) -> Initializer:
  """U(-1/√fan_in, 1/√fan_in): PyTorch's default Conv2d / Linear bias for a weight with `fan_in`."""
  bound = 1 / math.sqrt(fan_in)

  def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def conv2d(in_features: int, features: int, kernel_size: int, stride: int = 1,
           use_bias: bool = True, kernel_init: Initializer = DEFAULT_KERNEL_INIT,
           name: str | None = None, dtype: Dtype | None = None) -> nn.Conv:
  """PyTorch's `nn.Conv2d(in_features, features, kernel_size, stride, padding=kernel_size // 2,
  bias=use_bias)`: kernel from `kernel_init` (PyTorch's default unless given), bias PyTorch's
  default. Input (B, H, W, in_features) -> (B, ⌊(H - 1) / stride⌋ + 1, ..., features) for odd k.
  `dtype`: the compute dtype (Flax's `dtype`; None infers it), parameters float32 either way."""
  pad = kernel_size // 2
  return nn.Conv(features, (kernel_size, kernel_size), (stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=use_bias, kernel_init=kernel_init,
                 bias_init=default_bias_init(in_features * kernel_size * kernel_size), name=name,
                 dtype=dtype)


__all__ = ['DEFAULT_KERNEL_INIT', 'KAIMING_NORMAL_FAN_OUT', 'conv2d', 'default_bias_init']
