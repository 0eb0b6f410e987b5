"""What every robust_jax classifier shares: input normalisation, dropout sites and feature hooks.

* Inputs are images in [0, 1] pixel units, (B, H, W, C); the model normalises with the dataset's
  mean/std itself, so attack epsilons are always in pixel units.
* Dropout sites: each model names the places where dropout may go (`DROPOUT_SITES`); the config picks
  the rate and the sites. Masks are drawn per example from the `dropout` RNG stream
  (`random_utils.per_example_bernoulli`), so they do not depend on the device count.
* Feature hooks: each model names shallow places (`FEATURE_SITES`) where a feature transform
  `fn(features (B, H, W, C), key) -> features` can be inserted by config; it runs in training only,
  with keys from the `feature_mask` RNG stream. Local feature masking (`robust_jax.lfm`) plugs in here.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from robust_jax import random_utils

FeatureTransform = Callable[[jax.Array, jax.Array], jax.Array]


class Classifier(nn.Module):
  """Base class. Subclasses define `__call__(images, train) -> logits (B, num_classes)`."""

  num_classes: int = 10
  mean: Sequence[float] = (0.5,)
  std: Sequence[float] = (0.5,)
  dropout_rate: float = 0.0
  dropout_sites: Sequence[str] = ()
  # ((site, transform), ...): transforms applied at named feature sites in training.
  feature_transforms: Sequence[tuple[str, FeatureTransform]] = ()
  bn_momentum: float = 0.9  # Flax convention: PyTorch momentum 0.1 <-> Flax 0.9.

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ()
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ()

  def normalize(self, images: jax.Array) -> jax.Array:
    return (images - jnp.asarray(self.mean)) / jnp.asarray(self.std)

  def dropout(self, site: str, x: jax.Array, train: bool) -> jax.Array:
    """Inverted dropout at `site` if the config enables it there; identity otherwise."""
    if not train or self.dropout_rate == 0.0 or site not in self.dropout_sites:
      return x
    keep = random_utils.per_example_bernoulli(self.make_rng('dropout'), 1.0 - self.dropout_rate,
                                              x.shape)
    return jnp.where(keep, x / (1.0 - self.dropout_rate), 0.0)

  def feature_hook(self, site: str, x: jax.Array, train: bool) -> jax.Array:
    """Applies the transforms configured at `site` (training only)."""
    for transform_site, transform in self.feature_transforms:
      if train and transform_site == site:
        x = transform(x, self.make_rng('feature_mask'))
    return x

  def batch_norm(self, train: bool, **kwargs) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=not train, momentum=kwargs.pop('momentum',
                        self.bn_momentum), epsilon=1e-5, **kwargs)
