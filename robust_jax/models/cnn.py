"""The small CNN the seed papers use for MNIST-like data.

conv(k×k, widths[0]) -> [BN] -> ReLU -> [hook 'conv1'] -> maxpool 2 -> conv(k×k, widths[1]) ->
[BN] -> ReLU -> [hook 'conv2'] -> maxpool 2 -> flatten -> [dropout 'features'] -> Dense(hidden) ->
ReLU -> [dropout 'classifier'] -> Dense(num_classes).

`use_batch_norm=True` (config key `batch_norm`) puts batch norm (PyTorch momentum 0.1, ε 1e-5)
after each conv, the conv then without bias; off by default (the papers' CNN has none), on in the
tests that check batch-norm statistics through every method.

The convolutions are `input_conv.conv`: XLA's, with a faster input gradient on CPU for the first
(few-channel) one, which every attack differentiates.

The field defaults are the papers' LeNet-like CNN (`config_defaults.cnn_model()`, used by
configs/mnist_adversarial.py); the model's registered config defaults (`robust_jax.models`) take a
smaller kernel and hidden layer, which train about 1.6x faster on CPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from robust_jax.kernels import input_conv, pooling
from robust_jax.models.base import Classifier

__all__ = ['CNN']


class CNN(Classifier):
  widths: Sequence[int] = (32, 64)
  kernel_size: int = 5
  hidden_size: int = 1024
  use_batch_norm: bool = False

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('features', 'classifier')
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ('conv1', 'conv2')

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.normalize(images)
    for site, width in zip(self.FEATURE_SITES, self.widths):
      x = nn.Conv(width, (self.kernel_size, self.kernel_size), use_bias=not self.use_batch_norm,
                  dtype=self.compute_dtype, conv_general_dilated=input_conv.conv)(x)
      if self.use_batch_norm:
        x = self.batch_norm(train)(x)
      x = nn.relu(x)
      x = pooling.max_pool(self.feature_hook(site, x, train), (2, 2), (2, 2))
    x = self.dropout('features', x.reshape(x.shape[0], -1), train)
    x = self.dropout('classifier', nn.relu(nn.Dense(self.hidden_size, dtype=self.compute_dtype)(x)),
                     train)
    return self.logits(x)
