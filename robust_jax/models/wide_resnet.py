"""Wide residual networks WRN-depth-widen (Zagoruyko & Komodakis 2016); WRN-28-10 and WRN-34-10.

stem conv3×3(16) -> [hook 'stem'] -> 3 stages of n = (depth - 4) / 6 blocks of widths
16k/32k/64k (strides 1/2/2), each followed by [hook 'stage1'..'stage3'] -> BN -> ReLU -> global
average pool -> [dropout 'classifier'] -> Dense.
Block (as in the official AMP code, hiyouga/AMP-Regularizer models/wide_resnet.py, papers.md 1.5):
BN -> ReLU -> conv3×3 -> [dropout 'block'] -> BN -> ReLU -> conv3×3(stride); shortcut
conv1×1(stride) on the block input when the shape changes, else the block input.

Follows the official code: no conv has a bias; every conv pads like PyTorch's `padding=k // 2`,
(1, 1) for the 3×3 ones also at stride 2 ('SAME' would pad (0, 1) on even sizes); conv kernels
kaiming_normal fan_out, N(0, 2 / (k·k·out)); BN γ = 1, β = 0, PyTorch's BatchNorm2d
(`base.BatchNorm`; the classifier BN with the official PyTorch momentum 0.9); Linear weight
PyTorch's default U(±1/√fan_in), bias 0 (`torch_init`). The stride sits on the second conv as in
the official code (Zagoruyko & Komodakis put it on the first). WRN-28-10: 36,479,194 parameters for
10 classes, 36,536,884 for 100, as the official model.
"""
from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from robust_jax.models import torch_init
from robust_jax.models.base import Classifier

__all__ = ['WideResNet']

_conv = functools.partial(torch_init.conv2d, use_bias=False,
                          kernel_init=torch_init.KAIMING_NORMAL_FAN_OUT)


class WideResNet(Classifier):
  depth: int = 28
  widen_factor: int = 10

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('block', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('stem', 'stage1', 'stage2', 'stage3')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    if (self.depth - 4) % 6:
      raise ValueError(f'WideResNet depth must be 6n + 4, got {self.depth}')
    blocks_per_stage = (self.depth - 4) // 6
    conv = functools.partial(_conv, dtype=self.compute_dtype)
    x = conv(images.shape[-1], 16, 3)(self.normalize(images))
    x = self.feature_hook('stem', x, train)
    for stage, width in enumerate((16, 32, 64)):
      width *= self.widen_factor
      for block in range(blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        out = conv(x.shape[-1], width, 3)(nn.relu(self.batch_norm(train)(x)))
        out = self.dropout('block', out, train)
        out = conv(width, width, 3, stride)(nn.relu(self.batch_norm(train)(out)))
        if stride != 1 or x.shape[-1] != width:
          x = conv(x.shape[-1], width, 1, stride)(x)
        x = x + out
      x = self.feature_hook(f'stage{stage + 1}', x, train)
    # The reference classifier BN uses PyTorch momentum 0.9, i.e. Flax momentum 0.1.
    x = jnp.mean(nn.relu(self.batch_norm(train, momentum=0.1)(x)), axis=(1, 2))
    x = self.dropout('classifier', x, train)
    return self.logits(x, kernel_init=torch_init.DEFAULT_KERNEL_INIT)
