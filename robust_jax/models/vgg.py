"""VGG-16 with batch norm, as in the official AMP code (hiyouga/AMP-Regularizer models/vgg.py,
papers.md section 1.5).

Each conv: conv3×3 (bias, padding 1) -> BN -> ReLU -> [dropout 'conv']; a 2×2 max-pool ends each
of the five blocks, followed by [hook 'block1'..'block5']. Classifier: flatten -> Dense(4096) ->
ReLU -> [dropout 'classifier'] -> Dense(4096) -> ReLU -> [dropout 'classifier'] ->
Dense(num_classes).

Follows the official code: conv kernels kaiming_normal fan_out, N(0, 2 / (9·out)); conv biases
PyTorch's default U(±1/√fan_in); BN γ = 1, β = 0, PyTorch's BatchNorm2d (`base.BatchNorm`); Linear
weights PyTorch's default U(±1/√fan_in), biases 0 (`torch_init`). The one departure: the max-pool
pads 'SAME', so 28×28 inputs reach 1×1 like 32×32 ones (on 32×32 it pools exactly as PyTorch's
MaxPool2d(2, 2)). 33,646,666 parameters for 10 classes, 34,015,396 for 100, as the official model.
"""
from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from robust_jax.kernels import pooling
from robust_jax.models import torch_init
from robust_jax.models.base import Classifier

__all__ = ['VGG16', 'VGG16_BLOCKS']

VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(Classifier):
  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('conv', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('block1', 'block2', 'block3', 'block4', 'block5')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.normalize(images)
    for site, widths in zip(self.FEATURE_SITES, VGG16_BLOCKS):
      for width in widths:
        conv = torch_init.conv2d(x.shape[-1], width, 3,
                                 kernel_init=torch_init.KAIMING_NORMAL_FAN_OUT,
                                 dtype=self.compute_dtype)
        x = nn.relu(self.batch_norm(train)(conv(x)))
        x = self.dropout('conv', x, train)
      x = self.feature_hook(site, pooling.max_pool(x, (2, 2), (2, 2), padding='SAME'), train)
    x = x.reshape(x.shape[0], -1)
    for _ in range(2):
      x = nn.Dense(4096, kernel_init=torch_init.DEFAULT_KERNEL_INIT, dtype=self.compute_dtype)(x)
      x = self.dropout('classifier', nn.relu(x), train)
    return self.logits(x, kernel_init=torch_init.DEFAULT_KERNEL_INIT)
