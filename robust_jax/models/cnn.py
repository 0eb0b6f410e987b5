"""The small CNN the seed papers use for MNIST-like data.

conv(k×k, widths[0]) -> ReLU -> [hook 'conv1'] -> maxpool 2 -> conv(k×k, widths[1]) -> ReLU ->
[hook 'conv2'] -> maxpool 2 -> flatten -> [dropout 'features'] -> Dense(hidden) -> ReLU ->
[dropout 'classifier'] -> Dense(num_classes).

The papers' LeNet-like variant is kernel 5, widths (32, 64), hidden 1024 (the defaults); the offline
default config uses kernel 3 and hidden 256, which trains about 1.6x faster on CPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from robust_jax.models.base import Classifier


class CNN(Classifier):
  widths: Sequence[int] = (32, 64)
  kernel_size: int = 5
  hidden_size: int = 1024

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('features', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('conv1', 'conv2')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.normalize(images)
    for site, width in zip(self.FEATURE_SITES, self.widths):
      x = nn.relu(nn.Conv(width, (self.kernel_size, self.kernel_size))(x))
      x = nn.max_pool(self.feature_hook(site, x, train), (2, 2), (2, 2))
    x = self.dropout('features', x.reshape(x.shape[0], -1), train)
    x = self.dropout('classifier', nn.relu(nn.Dense(self.hidden_size)(x)), train)
    return nn.Dense(self.num_classes)(x)
