"""VGG-16 with batch norm, as in the AMP reference code (papers.md section 1.5).

Each conv: conv3×3 (bias) -> BN -> ReLU -> [dropout 'conv']; a 2×2 max-pool ('SAME' padding, so
28×28 inputs reach 1×1 like 32×32 ones) ends each of the five blocks, followed by
[hook 'block1'..'block5']. Classifier: flatten -> Dense(4096) -> ReLU ->
[dropout 'classifier'] -> Dense(4096) -> ReLU -> [dropout 'classifier'] -> Dense(num_classes).
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from robust_jax.models.base import Classifier

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(Classifier):
  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('conv', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('block1', 'block2', 'block3', 'block4', 'block5')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.normalize(images)
    for site, widths in zip(self.FEATURE_SITES, VGG16_BLOCKS):
      for width in widths:
        x = nn.relu(self.batch_norm(train)(nn.Conv(width, (3, 3))(x)))
        x = self.dropout('conv', x, train)
      x = self.feature_hook(site, nn.max_pool(x, (2, 2), (2, 2), padding='SAME'), train)
    x = x.reshape(x.shape[0], -1)
    for _ in range(2):
      x = self.dropout('classifier', nn.relu(nn.Dense(4096)(x)), train)
    return nn.Dense(self.num_classes)(x)
