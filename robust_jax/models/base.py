"""What every robust_jax classifier shares: input normalisation, dropout, feature hooks, batch norm.

* Inputs are images in [0, 1] pixel units, (B, H, W, C); the model normalises with the dataset's
  mean/std itself, so attack epsilons are always in pixel units. Images of another dtype, or
  concrete images with values outside [-0.5, 1.5] (uint8-range floats, already-normalised images;
  the slack admits unclipped perturbations), are refused with a one-line error
  (`Classifier.normalize`); traced images are not read.
* Dropout sites: each model names the places where dropout may go (`DROPOUT_SITES`); the config picks
  the rate and the sites. Masks are drawn per example from the `dropout` RNG stream
  (`random_utils.per_example_bernoulli`), so they do not depend on the device count.
* Feature hooks: each model names shallow places (`FEATURE_SITES`) where a feature transform
  `fn(features (B, H, W, C), key) -> features` can be inserted by config; it runs in training only,
  with keys from the `feature_mask` RNG stream. Local feature masking (`robust_jax.lfm`) plugs in here.
* Batch norm (`BatchNorm`) is PyTorch's `nn.BatchNorm2d`: ε = 1e-5, momentum 0.1 (Flax 0.9), the
  batch normalised with its biased variance, the running variance updated with the unbiased one
  (`unbiased_running_variance=False` gives Flax's biased update).
* Mixed precision (`compute_dtype`, config key `train.compute_dtype`): convolutions and hidden
  matmuls compute in `compute_dtype` (e.g. bfloat16) from float32 parameters (Flax `dtype=`,
  `param_dtype=float32`). The input normalisation runs in float32, then casts, so gradients with
  respect to the float32 images are float32; batch norm reduces its statistics in float32 and keeps
  them float32, its output in `compute_dtype`; dropout and feature transforms see `compute_dtype`
  activations. The head (`logits`) computes in float32, so logits (B, num_classes) are float32,
  as is every softmax, loss and attack step built on them.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.typing import Dtype

from robust_jax import arguments, random_utils

__all__ = ['BatchNorm', 'Classifier', 'FeatureTransform', 'PIXEL_SLACK', 'per_example_dropout']

FeatureTransform = Callable[[jax.Array, jax.Array], jax.Array]
# How far outside [0, 1] a concrete input image may go: perturbed, unclipped inputs (DropAttack)
# pass; uint8-range floats and mean/std-normalised images (Fashion-MNIST's: [-0.81, 2.02]) do not.
PIXEL_SLACK = 0.5


def per_example_dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
  """Inverted dropout: x / (1 - rate) where kept, 0 elsewhere; example b's mask depends only on
  (key, b) (`random_utils.per_example_bernoulli`), not on the batch size or device count."""
  keep = random_utils.per_example_bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


class BatchNorm(nn.BatchNorm):
  """Flax batch norm whose running variance, like PyTorch's, tracks the unbiased batch variance.

  In training the batch is normalised with its biased variance v = Σ(x - mean)² / n (n = elements
  per feature: batch × spatial positions, the global batch under data parallelism), and
    running_var <- momentum · running_var + (1 - momentum) · v · n / (n - 1)
  when `unbiased_running_variance` (PyTorch), else with v itself (Flax). Features on the last axis.
  """
  unbiased_running_variance: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    updates_statistics = not self.is_initializing() and not nn.merge_param(
        'use_running_average', self.use_running_average, use_running_average)
    if not (updates_statistics and self.unbiased_running_variance):
      return super().__call__(x, use_running_average)
    previous = self.get_variable('batch_stats', 'var')
    y = super().__call__(x, use_running_average)
    # Flax stored momentum · previous + (1 - momentum) · v; rescale its v term by n / (n - 1).
    n = x.size // x.shape[-1]
    batch_term = self.get_variable('batch_stats', 'var') - self.momentum * previous
    self.put_variable('batch_stats', 'var',
                      self.momentum * previous + batch_term * (n / max(n - 1, 1)))
    return y


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
  unbiased_running_variance: bool = True  # PyTorch's running-variance update (see `BatchNorm`).
  compute_dtype: Dtype = jnp.float32  # of convs, hidden matmuls, activations; params stay float32.

  DROPOUT_SITES: ClassVar[tuple[str, ...]] = ()
  FEATURE_SITES: ClassVar[tuple[str, ...]] = ()

  def __post_init__(self):
    """Refuses fields that would make the model meaningless, in one line naming the class and
    field: num_classes >= 1, finite mean and std > 0 of one length, a dropout rate in [0, 1), and
    only the sites this model has."""
    name = type(self).__name__
    if not isinstance(self.num_classes, int) or self.num_classes < 1:
      raise ValueError(f'{name}(num_classes={self.num_classes!r}): must be an int >= 1')
    mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
    if mean.ndim != 1 or mean.shape != std.shape or not np.all(np.isfinite(mean)):
      raise ValueError(f'{name}(mean={tuple(self.mean)!r}, std={tuple(self.std)!r}): must be '
                       'sequences of finite numbers of one length, one value per channel or one')
    if not np.all(np.isfinite(std) & (std > 0)):
      raise ValueError(f'{name}(std={tuple(self.std)!r}): every value must be a finite number > 0')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f'{name}(dropout_rate={self.dropout_rate!r}): must be a number in [0, 1)')
    unknown = [site for site in self.dropout_sites if site not in self.DROPOUT_SITES]
    unknown += [site for site, _ in self.feature_transforms if site not in self.FEATURE_SITES]
    if unknown:
      raise ValueError(f'{name}: no site {unknown[0]!r}; dropout sites '
                       f'{", ".join(self.DROPOUT_SITES) or "none"}, feature sites '
                       f'{", ".join(self.FEATURE_SITES) or "none"}')
    super().__post_init__()

  def normalize(self, images: jax.Array) -> jax.Array:
    """(images - mean) / std in float32, then cast to `compute_dtype`: (B, H, W, C).

    The images must be pixel values in [0, 1] (the model normalises them itself, so attack
    epsilons are in pixel units): a non-float dtype is refused, and so are concrete images with a
    value outside [-PIXEL_SLACK, 1 + PIXEL_SLACK] (e.g. uint8-range floats, or images already
    normalised with a mean and std). The slack admits inputs perturbed without clipping
    (DropAttack's input term). Traced images (under `jax.jit`, `jax.grad`, ...) are not read: the
    check costs nothing in a compiled step (`robust_jax.arguments`).
    """
    arguments.check_image_array('images', images)
    if len(self.mean) not in (1, images.shape[-1]):
      raise ValueError(f'images.shape={tuple(images.shape)}: {type(self).__name__} normalises '
                       f'{len(self.mean)} channels (mean={tuple(self.mean)!r}); give images with '
                       'that many channels, or one mean and std per channel of these')
    if not self.is_initializing():
      arguments.check_pixel_values('images', images, slack=PIXEL_SLACK)
    return ((images - jnp.asarray(self.mean)) / jnp.asarray(self.std)).astype(self.compute_dtype)

  def logits(self, features: jax.Array, **dense_kwargs) -> jax.Array:
    """The head: Dense(num_classes) computed in float32, (B, D) -> float32 logits (B, num_classes).

    `dense_kwargs` go to `nn.Dense` (e.g. `kernel_init`)."""
    return nn.Dense(self.num_classes, dtype=jnp.float32, **dense_kwargs)(features)

  def dropout(self, site: str, x: jax.Array, train: bool) -> jax.Array:
    """Inverted dropout at `site` if the config enables it there; identity otherwise."""
    if not train or self.dropout_rate == 0.0 or site not in self.dropout_sites:
      return x
    return per_example_dropout(x, self.dropout_rate, self.make_rng('dropout'))

  def feature_hook(self, site: str, x: jax.Array, train: bool) -> jax.Array:
    """Applies the transforms configured at `site` (training only)."""
    for transform_site, transform in self.feature_transforms:
      if train and transform_site == site:
        x = transform(x, self.make_rng('feature_mask'))
    return x

  def batch_norm(self, train: bool, **kwargs) -> BatchNorm:
    """PyTorch's BatchNorm2d in this model's mode; `kwargs` override (e.g. momentum) or add."""
    return self.batch_norm_def(train)(**kwargs)

  def batch_norm_def(self, train: bool) -> Callable[..., BatchNorm]:
    """The constructor `batch_norm` calls, for submodules that build their own batch norms."""
    return functools.partial(BatchNorm, use_running_average=not train, momentum=self.bn_momentum,
                             epsilon=1e-5, unbiased_running_variance=self.unbiased_running_variance,
                             dtype=self.compute_dtype)
