"""Wide residual networks WRN-depth-widen (Zagoruyko & Komodakis 2016); WRN-28-10 and WRN-34-10.

stem conv3×3(16) -> [hook 'stem'] -> 3 stages of n = (depth - 4) / 6 blocks of widths
16k/32k/64k (strides 1/2/2), each followed by [hook 'stage1'..'stage3'] -> BN -> ReLU -> global
average pool -> [dropout 'classifier'] -> Dense.
Block (as in the AMP reference, papers.md 1.5): BN -> ReLU -> conv3×3 -> [dropout 'block'] -> BN ->
ReLU -> conv3×3(stride); shortcut conv1×1(stride, no bias) on the block input when the shape changes.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from robust_jax.models.base import Classifier


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
    x = self.feature_hook('stem', nn.Conv(16, (3, 3))(self.normalize(images)), train)
    for stage, width in enumerate((16, 32, 64)):
      width *= self.widen_factor
      for block in range(blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        out = nn.Conv(width, (3, 3))(nn.relu(self.batch_norm(train)(x)))
        out = self.dropout('block', out, train)
        out = nn.Conv(width, (3, 3), (stride, stride))(nn.relu(self.batch_norm(train)(out)))
        if stride != 1 or x.shape[-1] != width:
          x = nn.Conv(width, (1, 1), (stride, stride), use_bias=False)(x)
        x = x + out
      x = self.feature_hook(f'stage{stage + 1}', x, train)
    # The reference classifier BN uses PyTorch momentum 0.9, i.e. Flax momentum 0.1.
    x = jnp.mean(nn.relu(self.batch_norm(train, momentum=0.1)(x)), axis=(1, 2))
    return nn.Dense(self.num_classes)(self.dropout('classifier', x, train))
