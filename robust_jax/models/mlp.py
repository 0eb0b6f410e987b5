"""Multi-layer perceptron: flatten -> [Dense -> ReLU -> dropout('hidden')]* -> Dense."""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from robust_jax.models.base import Classifier

__all__ = ['MLP']


class MLP(Classifier):
  hidden_sizes: Sequence[int] = (256, 256)

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ('hidden',)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = self.normalize(images).reshape(images.shape[0], -1)
    for size in self.hidden_sizes:
      x = self.dropout('hidden', nn.relu(nn.Dense(size, dtype=self.compute_dtype)(x)), train)
    return self.logits(x)
