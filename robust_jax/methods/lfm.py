"""LFM: local feature masking (Gong, Zhang, Hou, Chen & Jiang, IJCNN 2024, arXiv 2407.13646).

During training only, random rectangles of chosen channels of shallow feature maps are overwritten;
inserted at the models' feature hooks (`config.feature_mask.sites`, e.g. 'conv1'). Per example b
(mode 'paper', PROPOSAL of papers.md 3.3):

    apply_b ~ Bernoulli(probability)
    C_b     = round(channel_fraction · C) channels drawn without replacement
    for c in C_b: box (h, w, top, left) with area ~ U(area_range)·H·W and aspect ~ U(aspect_range)
                  (Random-Erasing sampler); h, w are clipped to H-1, W-1 instead of the reference's
                  up to 100 rejection tries
                  x[b, top:top+h, left:left+w, c] = v_{b,c},  v ~ U(0, 1)  (or 0 with fill='zero')

Mode 'official_code' reproduces the released code (papers.md 3.2): one coin per batch, channels
drawn with replacement and shared by the batch, only the first `official_code_samples` examples
masked, its box sampler `CREP` (up to 100 rejection tries for h < H, w < W; x1 ∈ {0..H-h},
y1 ∈ {0..W-w}), and its indexing bug: `x[i][c][y1:y1+h][x1:x1+w] = v` slices rows twice, so it
fills the full-width row stripe [y1 + x1, y1 + min(x1 + w, min(h, H - y1))), empty when x1 >= h.
Masked positions get zero gradient (constant overwrite). The mask is off at evaluation (the hook
only runs in training).

Two layers. `mask` (and the two masks it chooses between, `local_feature_mask` and
`official_code_mask`) are pure functions of a feature map; call it in your own model's training
pass, e.g. in a Flax module `x = lfm.mask(x, self.make_rng('feature_mask'), probability=0.15,
channel_fraction=0.5)`. `lfm(config)` is the adapter the `feature_mask` config section builds.
"""
from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax import arguments, random_utils
from robust_jax.config import schema as cs
from robust_jax.models import FeatureTransform
from robust_jax.objectives import FEATURE_MASKS

__all__ = ['DEFAULTS', 'FILLS', 'MODES', 'SCHEMA', 'lfm', 'local_feature_mask', 'mask',
           'official_code_boxes', 'official_code_mask', 'official_code_stripes']

FILLS = ('uniform', 'zero')
MODES = ('paper', 'official_code')
SCHEMA: cs.Schema = {
    'sites': cs.sequence_of(cs.text(), min_length=1, unique=True),
    'probability': cs.real(0.0, 1.0, exclusive_minimum=True,
                           note="probability 0 never masks: use feature_mask 'none'"),
    'channel_fraction': cs.real(0.0, 1.0, exclusive_minimum=True,
                                note="fraction 0 masks no channel: use feature_mask 'none'"),
    # (low, high) fractions of the feature map's area, and of height / width
    'area_range': cs.sequence_of(cs.real(0.0, 1.0, exclusive_minimum=True), min_length=2,
                                 max_length=2, order='non_decreasing'),
    'aspect_range': cs.sequence_of(cs.positive_real(), min_length=2, max_length=2,
                                   order='non_decreasing'),
    'fill': cs.one_of(*FILLS),
    'mode': cs.one_of(*MODES),
    'official_code_samples': cs.integer(1),
}
DEFAULTS = dict(sites=('conv1',), probability=0.15, channel_fraction=0.5, area_range=(0.02, 0.4),
                aspect_range=(0.3, 1 / 0.3), fill='uniform', mode='paper',
                official_code_samples=8)  # configs/lfm.py:fashion_mnist


def _check_ranges(area_range, aspect_range) -> None:
  """area_range (low, high) in [0, 1]; aspect_range (low, high) > 0, finite."""
  arguments.check_pair('area_range', area_range, 0.0, maximum=1.0)
  arguments.check_pair('aspect_range', aspect_range, 0.0, strict=True)


def _check_map_size(height, width) -> tuple[int, int]:
  """height, width: static ints >= 2 (a box is at most H - 1 by W - 1); returns them."""
  sizes = []
  for name, value, what in (('height', height, 'rows'), ('width', width, 'columns')):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
      raise TypeError(f'{name}={arguments.show(value)}: must be an int >= 2 (a static Python int)')
    if value < 2:
      raise ValueError(f'{name}={value}: must be an int >= 2 (a box spans at most {name} - 1 '
                       f'{what})')
    sizes.append(int(value))
  return sizes[0], sizes[1]


def _check_mask(features, key, probability, channel_fraction, area_range, aspect_range,
                fill, with_replacement: bool = False) -> None:
  """The arguments shared by `local_feature_mask` and `official_code_mask`; channel_fraction may
  exceed 1 only when channels are drawn `with_replacement`."""
  arguments.check_choice('fill', fill, FILLS)
  arguments.check_float_array('features', features, '(B, H, W, C), a batch of feature maps',
                              ndim=4, what=' (a batch of feature maps)')
  _, height, width, _ = features.shape
  if height < 2 or width < 2:
    raise ValueError(f'features.shape={tuple(features.shape)}: H and W must be >= 2 (a box spans '
                     'at most H - 1 rows and W - 1 columns)')
  arguments.check_key(key, purpose='draws the masks')
  arguments.check_number('probability', probability, 0.0, maximum=1.0)
  arguments.check_number('channel_fraction', channel_fraction, 0.0,
                         maximum=None if with_replacement else 1.0, static=True)
  _check_ranges(area_range, aspect_range)


def _boxes(key, shape, area_range, aspect_range):
  """(h, w, top, left) each of `shape`, for feature maps of height/width given in `shape[-2:]`."""
  *batch_shape, height, width = shape
  area_key, aspect_key, top_key, left_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, batch_shape, minval=area_range[0],
                            maxval=area_range[1]) * height * width
  aspect = jax.random.uniform(aspect_key, batch_shape, minval=aspect_range[0],
                              maxval=aspect_range[1])
  h = jnp.clip(jnp.round(jnp.sqrt(area * aspect)), 1, height - 1).astype(jnp.int32)
  w = jnp.clip(jnp.round(jnp.sqrt(area / aspect)), 1, width - 1).astype(jnp.int32)
  top = jnp.floor(jax.random.uniform(top_key, batch_shape) * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(left_key, batch_shape) * (width - w + 1)).astype(jnp.int32)
  return h, w, top, left


def local_feature_mask(features: jax.Array, key: jax.Array, *, probability: float,
                       channel_fraction: float, area_range=(0.02, 0.4),
                       aspect_range=(0.3, 1 / 0.3), fill: str = 'uniform') -> jax.Array:
  """LFM's mask as the paper describes it (Gong et al. 2024; mode 'paper' of the module docstring).

  features: (B, H, W, C) -> (B, H, W, C). Example b is masked with probability `probability`:
  round(channel_fraction · C) of its channels, drawn without replacement, each get one box of area
  ~ U(area_range)·H·W and aspect ~ U(aspect_range) filled with v ~ U(0, 1) (fill 'uniform') or 0
  ('zero'). Example b's randomness is fold_in(key, b). probability, channel_fraction in [0, 1]
  (channel_fraction a Python number); area_range (low, high) in [0, 1]; aspect_range > 0.
  """
  _check_mask(features, key, probability, channel_fraction, area_range, aspect_range, fill)
  batch, height, width, channels = features.shape
  num_masked = round(channel_fraction * channels)

  def one(example_features, example_key):
    apply_key, channel_key, box_key, fill_key = jax.random.split(example_key, 4)
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(channel_key, (channels,))))
    chosen = (rank < num_masked) & jax.random.bernoulli(apply_key, probability)
    h, w, top, left = _boxes(box_key, (channels, height, width), area_range, aspect_range)
    rows = jnp.arange(height)[:, None, None]
    cols = jnp.arange(width)[None, :, None]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w) & chosen
    value = (jax.random.uniform(fill_key, (channels,)) if fill == 'uniform'
             else jnp.zeros((channels,)))
    return jnp.where(inside, value.astype(features.dtype), example_features)

  return jax.vmap(one)(features, random_utils.per_example_keys(key, batch))


def _check_batch_shape(batch_shape) -> tuple[int, ...]:
  """batch_shape: a tuple (or list) of static ints >= 0; returns it as a tuple."""
  if not isinstance(batch_shape, (tuple, list)) or not all(
      isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) and n >= 0
      for n in batch_shape):
    raise TypeError(f'batch_shape={batch_shape!r}: must be a tuple of Python ints >= 0')
  return tuple(int(n) for n in batch_shape)


def official_code_boxes(key, batch_shape, height: int, width: int, area_range=(0.02, 0.4),
                        aspect_range=(0.3, 1 / 0.3), tries: int = 100):
  """(h, w, x1, y1), each of `batch_shape`, drawn as the released code's `CREP(H, W)`.

  Up to `tries` candidates (area ~ U(area_range)·H·W, aspect ~ U(aspect_range), h and w rounded
  half to even like Python's round); the first with w < W and h < H is kept (the code crashes when
  none is; here the last is clipped, which has probability < 1e-30 for the defaults). Then
  x1 ~ U{0..H-h} and y1 ~ U{0..W-w}. height, width: Python ints >= 2.
  """
  arguments.check_key(key, purpose='draws the boxes')
  height, width = _check_map_size(height, width)
  _check_ranges(area_range, aspect_range)
  tries = arguments.check_count('tries', tries)
  batch_shape = _check_batch_shape(batch_shape)
  area_key, aspect_key, x1_key, y1_key = jax.random.split(key, 4)
  shape = (*batch_shape, tries)
  area = jax.random.uniform(area_key, shape, minval=area_range[0],
                            maxval=area_range[1]) * height * width
  aspect = jax.random.uniform(aspect_key, shape, minval=aspect_range[0], maxval=aspect_range[1])
  h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  first = jnp.argmax((h < height) & (w < width), axis=-1)[..., None]
  h = jnp.minimum(jnp.take_along_axis(h, first, -1)[..., 0], height - 1)
  w = jnp.minimum(jnp.take_along_axis(w, first, -1)[..., 0], width - 1)
  x1 = jnp.floor(jax.random.uniform(x1_key, batch_shape) * (height - h + 1)).astype(jnp.int32)
  y1 = jnp.floor(jax.random.uniform(y1_key, batch_shape) * (width - w + 1)).astype(jnp.int32)
  return h, w, x1, y1


def official_code_stripes(key, batch_shape, height: int, width: int, area_range=(0.02, 0.4),
                          aspect_range=(0.3, 1 / 0.3)):
  """(start, stop) rows filled by the code's `x[i][c][y1:y1+h][x1:x1+w] = v`, each of batch_shape.

  The first slice keeps rows [y1, min(y1 + h, H)); the second keeps rows [x1, x1 + w) of those.
  """
  height, width = _check_map_size(height, width)
  h, w, x1, y1 = official_code_boxes(key, batch_shape, height, width, area_range, aspect_range)
  return y1 + x1, y1 + jnp.minimum(x1 + w, jnp.minimum(h, height - y1))


def official_code_mask(features: jax.Array, key: jax.Array, *, probability: float,
                       channel_fraction: float, area_range=(0.02, 0.4),
                       aspect_range=(0.3, 1 / 0.3), fill: str = 'uniform',
                       num_samples: int = 8) -> jax.Array:
  """LFM's mask as the released code computes it (Gong et al. 2024; `RandChannelDropout`, its
  row-stripe indexing bug included, see the module docstring).

  features: (B, H, W, C) -> (B, H, W, C). One coin with `probability` for the batch; then
  round(channel_fraction · C) channels drawn with replacement, shared by the batch; the first
  `num_samples` examples each get one stripe per drawn channel, filled with v ~ U(0, 1) or 0.
  probability in [0, 1]; channel_fraction ≥ 0, a Python number (> 1 draws more channels than
  there are, with replacement); area_range (low, high) in [0, 1]; aspect_range > 0; num_samples:
  a Python int >= 1.
  """
  _check_mask(features, key, probability, channel_fraction, area_range, aspect_range, fill,
              with_replacement=True)
  num_samples = arguments.check_count('num_samples', num_samples)
  batch, height, width, channels = features.shape
  num_draws = round(channel_fraction * channels)
  coin_key, channel_key, box_key, fill_key = jax.random.split(key, 4)
  drawn = jax.random.randint(channel_key, (num_draws,), 0, channels)  # with replacement
  start, stop = official_code_stripes(box_key, (batch, num_draws), height, width, area_range,
                                      aspect_range)
  rows = jnp.arange(height)[None, None, :]
  stripe = (rows >= start[..., None]) & (rows < stop[..., None])  # (B, draws, H)
  values = (jax.random.uniform(fill_key, (batch, num_draws)) if fill == 'uniform'
            else jnp.zeros((batch, num_draws)))
  sample_on = (jnp.arange(batch) < num_samples) & jax.random.bernoulli(coin_key, probability)
  # covered[b, d, row, c]: draw d fills (row, c) of example b. The code runs the draws in order, so
  # where several cover a position the last one's value stays.
  covered = (stripe[..., None] & (drawn[None, :, None, None] == jnp.arange(channels))
             & sample_on[:, None, None, None])
  last = num_draws - 1 - jnp.argmax(covered[:, ::-1], axis=1)  # (B, H, C)
  value = jnp.take_along_axis(values, last.reshape(batch, -1), axis=1)
  value = value.reshape(batch, height, 1, channels).astype(features.dtype)
  return jnp.where(jnp.any(covered, axis=1)[:, :, None, :], value, features)


def mask(features: jax.Array, key: jax.Array, *, probability: float, channel_fraction: float,
         area_range=(0.02, 0.4), aspect_range=(0.3, 1 / 0.3), fill: str = 'uniform',
         mode: str = 'paper', official_code_samples: int = 8) -> jax.Array:
  """Local feature masking (Gong et al. 2024): random boxes of random channels overwritten,

      x[b, top:top+h, left:left+w, c] = v_{b,c}    for the drawn examples b and channels c,

  by `local_feature_mask` (mode 'paper') or `official_code_mask` (mode 'official_code', with
  num_samples = official_code_samples). features: (B, H, W, C) -> (B, H, W, C); key: PRNG key;
  probability, channel_fraction in [0, 1] (mode 'official_code': channel_fraction ≥ 0); area_range
  in [0, 1], aspect_range > 0, (low, high); fill: 'uniform' (v ~ U(0, 1)) or 'zero';
  official_code_samples: a Python int >= 1. Use it in training passes only. Arguments are checked
  as each mask documents (`robust_jax.arguments`).
  """
  arguments.check_choice('mode', mode, MODES)
  official_code_samples = arguments.check_count('official_code_samples', official_code_samples)
  kwargs = dict(probability=probability, channel_fraction=channel_fraction,
                area_range=area_range, aspect_range=aspect_range, fill=fill)
  if mode == 'official_code':
    return official_code_mask(features, key, num_samples=official_code_samples, **kwargs)
  return local_feature_mask(features, key, **kwargs)


@FEATURE_MASKS.register('lfm', SCHEMA, defaults=DEFAULTS)
def lfm(config) -> FeatureTransform:
  """Adapter: `mask` with the `feature_mask` section's values, as `(features, key) -> features`;
  the models call it at each of `config.sites` in training passes only.
  """
  return functools.partial(
      mask, probability=config.probability, channel_fraction=config.channel_fraction,
      area_range=tuple(config.area_range), aspect_range=tuple(config.aspect_range),
      fill=config.fill, mode=config.mode, official_code_samples=config.official_code_samples)
