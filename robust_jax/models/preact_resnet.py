"""PreActResNet-18 as in the official AMP code (hiyouga/AMP-Regularizer models/preresnet.py,
papers.md section 1.5).

stem conv3×3(64, no bias) -> [hook 'stem'] -> 4 stages of 2 PreActBlocks (64/128/256/512, strides
1/2/2/2), each stage followed by [hook 'stage1'..'stage4'] -> BN -> ReLU -> global average pool
(the official AvgPool(4) on the 4×4 map) -> [dropout 'classifier'] -> Dense(num_classes).
PreActBlock: out = ReLU(BN(x)); residual = conv3×3(stride, bias) -> BN -> ReLU -> [dropout 'block']
-> conv3×3(bias); y = residual + shortcut, shortcut = conv1×1(stride, bias)(out) when the shape
changes, else the identity of `shortcut_input`.

What follows the official code, and where to switch:
* Identity shortcut: `shortcut_input='preactivated'` (default, the official code: `shortcut(out)`
  with an empty `Sequential` adds ReLU(BN(x))); 'input' adds the block input x as in He et al.
  (2016) and most PreActResNet code. Config key `model.shortcut_input`.
* Every conv pads like PyTorch's `padding=k // 2`, i.e. (1, 1) for the 3×3 ones, also at stride 2
  ('SAME' would pad (0, 1) on even sizes).
* Init as the official code: every conv kernel kaiming_normal fan_out, N(0, 2 / (k·k·out)); conv
  biases PyTorch's default U(±1/√fan_in); BN γ = 1, β = 0; Linear weight PyTorch's default
  U(±1/√fan_in), bias 0 (`torch_init`).
* Batch norm as PyTorch's BatchNorm2d: momentum 0.1, ε 1e-5, unbiased running variance
  (`base.BatchNorm`; the module field `unbiased_running_variance=False` gives Flax's biased one).
11,176,906 parameters for 10 classes, 11,223,076 for 100, as the official model.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from robust_jax.models import torch_init
from robust_jax.models.base import Classifier, per_example_dropout

__all__ = ['PreActBlock', 'PreActResNet18', 'SHORTCUT_INPUTS']

SHORTCUT_INPUTS = ('preactivated', 'input')

_conv = functools.partial(torch_init.conv2d, kernel_init=torch_init.KAIMING_NORMAL_FAN_OUT)


class PreActBlock(nn.Module):
  """The pre-activation basic block: (B, H, W, C) -> (B, ⌈H / stride⌉, ⌈W / stride⌉, width).

  `norm(name=...)` builds a batch-norm layer in the block's train / eval mode; `dropout_rate` is the
  rate of the dropout before the second conv (0: none); the convs compute in `compute_dtype`.
  """
  width: int
  stride: int
  norm: Callable[..., nn.Module]
  shortcut_input: str = 'preactivated'
  dropout_rate: float = 0.0
  compute_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.shortcut_input not in SHORTCUT_INPUTS:
      raise ValueError(f'shortcut_input={self.shortcut_input!r}: must be one of '
                       f'{", ".join(map(repr, SHORTCUT_INPUTS))}')
    conv = functools.partial(_conv, dtype=self.compute_dtype)
    in_features = x.shape[-1]
    out = nn.relu(self.norm(name='bn1')(x))
    if self.stride != 1 or in_features != self.width:
      shortcut = conv(in_features, self.width, 1, self.stride, name='shortcut')(out)
    else:
      shortcut = out if self.shortcut_input == 'preactivated' else x
    residual = conv(in_features, self.width, 3, self.stride, name='conv1')(out)
    residual = nn.relu(self.norm(name='bn2')(residual))
    if train and self.dropout_rate > 0.0:
      residual = per_example_dropout(residual, self.dropout_rate, self.make_rng('dropout'))
    return shortcut + conv(self.width, self.width, 3, name='conv2')(residual)


class PreActResNet18(Classifier):
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  widths: tuple[int, ...] = (64, 128, 256, 512)
  shortcut_input: str = 'preactivated'

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('block', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('stem', 'stage1', 'stage2', 'stage3', 'stage4')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = _conv(images.shape[-1], self.widths[0], 3, use_bias=False,
              dtype=self.compute_dtype)(self.normalize(images))
    x = self.feature_hook('stem', x, train)
    block_dropout = self.dropout_rate if 'block' in self.dropout_sites else 0.0
    for stage, (num_blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(num_blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(width, stride, self.batch_norm_def(train), self.shortcut_input,
                        block_dropout, self.compute_dtype)(x, train)
      x = self.feature_hook(f'stage{stage + 1}', x, train)
    x = jnp.mean(nn.relu(self.batch_norm(train)(x)), axis=(1, 2))
    x = self.dropout('classifier', x, train)
    return self.logits(x, kernel_init=torch_init.DEFAULT_KERNEL_INIT)
