"""PreActResNet-18 as in the AMP reference code (papers.md section 1.5).

stem conv3×3(64, no bias) -> [hook 'stem'] -> 4 stages of 2 PreActBlocks (64/128/256/512, strides
1/2/2/2), each stage followed by [hook 'stage1'..'stage4'] -> BN -> ReLU -> global average pool ->
[dropout 'classifier'] -> Dense(num_classes).
PreActBlock: out = ReLU(BN(x)); residual = conv3×3(stride, bias) -> BN -> ReLU -> [dropout 'block']
-> conv3×3(bias); shortcut = conv1×1(stride, bias)(out) when the shape changes, else x.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from robust_jax.models.base import Classifier


class PreActResNet18(Classifier):
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  widths: tuple[int, ...] = (64, 128, 256, 512)

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('block', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('stem', 'stage1', 'stage2', 'stage3', 'stage4')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
    x = nn.Conv(self.widths[0], (3, 3), use_bias=False, kernel_init=conv_init)(
        self.normalize(images))
    x = self.feature_hook('stem', x, train)
    for stage, (num_blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(num_blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        out = nn.relu(self.batch_norm(train)(x))
        shortcut = x
        if stride != 1 or x.shape[-1] != width:
          shortcut = nn.Conv(width, (1, 1), (stride, stride), kernel_init=conv_init)(out)
        out = nn.Conv(width, (3, 3), (stride, stride), kernel_init=conv_init)(out)
        out = self.dropout('block', nn.relu(self.batch_norm(train)(out)), train)
        x = shortcut + nn.Conv(width, (3, 3), kernel_init=conv_init)(out)
      x = self.feature_hook(f'stage{stage + 1}', x, train)
    x = jnp.mean(nn.relu(self.batch_norm(train)(x)), axis=(1, 2))
    return nn.Dense(self.num_classes)(self.dropout('classifier', x, train))
