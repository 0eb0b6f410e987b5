"""AutoAugment's CIFAR10 and SVHN policies (Cubuk et al. 2019) as the AMP reference code runs them.

The reference (hiyouga/AMP-Regularizer `data_utils.py`, the widely used DeepVoltaire port) draws one
of a policy's 25 sub-policies uniformly per image. A sub-policy is two steps (p, op, level), applied
in order, step i when u_i < p_i with u_i ~ U[0, 1). The level l in 0..9 picks the op's magnitude
and, with a random sign, the argument Pillow got there (`autoaugment_policies.op_argument`).

Each op takes one uint8 RGB image (H, W, 3) and a float32 argument and follows Pillow 13's
arithmetic: float32 blends truncated to uint8 (`_blend`), integer histograms (equalize), the
float64 truncation of autocontrast, 16.16 fixed point for rotate's nearest affine. On 32×32 images
at every level all ops but shear match Pillow bit for bit (tests/data/test_augmentation.py; rotate's
fixed-point coefficients come from float32 trigonometry and may be 2^-16 off Pillow's, which moved
no pixel there). Shear uses Pillow's bicubic (a = −1) in float32 where Pillow uses float64, so under
1 % of pixels differ: by one grey level where the cubic lands on an integer, and by more where a
source point falls exactly on the image edge. Arguments are computed on the host in float64, as
the reference computes them.
`apply_policy` maps a batch through a policy with `jax.vmap` and `lax.switch`, keyed per example.
`POLICIES` (`autoaugment_policies`, with the magnitudes) names the tables for
`config.dataset.autoaugment`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax import random_utils
from robust_jax.data.autoaugment_policies import (CIFAR10_POLICY, MAGNITUDES, POLICIES, SVHN_POLICY,
                                                  op_argument)

FILL = 128  # the reference's fillcolor (128, 128, 128) for pixels from outside the image



def _blend(degenerate: jax.Array, image: jax.Array, factor: jax.Array) -> jax.Array:
  """Pillow's `Image.blend(degenerate, image, factor)`: trunc(d + factor·(x − d)) in float32,
  clipped to [0, 255]; `ImageEnhance`'s Color, Contrast, Sharpness and Brightness are this blend."""
  d = degenerate.astype(jnp.float32)
  delta = image.astype(jnp.float32) - d
  # Pillow rounds factor·delta to float32 before adding d; XLA may fuse product and sum into one
  # FMA, rounding once. With the factor split into two parts of <= 15 significant bits, both
  # partial products are exact, so their sum is factor·delta rounded once, however XLA fuses.
  high = jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(factor, jnp.uint32) & jnp.uint32(0xFFFFFE00), jnp.float32)
  value = d + (high * delta + (factor - high) * delta)
  return jnp.floor(jnp.clip(value, 0.0, 255.0)).astype(jnp.uint8)


def _luminance(image: jax.Array) -> jax.Array:
  """Pillow's RGB -> L conversion, (19595 R + 38470 G + 7471 B + 2^15) >> 16, as int32 (H, W)."""
  rgb = image.astype(jnp.int32)
  return (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16


def _sample_nearest(image: jax.Array, source_y: jax.Array, source_x: jax.Array) -> jax.Array:
  """out[y, x] = image[source_y, source_x] (int32 (H, W) indices), FILL where outside the image."""
  height, width, _ = image.shape
  inside = (source_y >= 0) & (source_y < height) & (source_x >= 0) & (source_x < width)
  pixels = image[jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1)]
  return jnp.where(inside[..., None], pixels, jnp.uint8(FILL))


def _pixel_grid(height: int, width: int) -> tuple[jax.Array, jax.Array]:
  return jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing='ij')


def _translate(image: jax.Array, offset_y: jax.Array, offset_x: jax.Array) -> jax.Array:
  """Pillow's nearest affine for a shift (`ImagingScaleAffine`): source = floor(i + 0.5 + t)."""
  y, x = _pixel_grid(*image.shape[:2])
  return _sample_nearest(image, jnp.floor(y + 0.5 + offset_y).astype(jnp.int32),
                         jnp.floor(x + 0.5 + offset_x).astype(jnp.int32))


def translate_x(image: jax.Array, pixels: jax.Array) -> jax.Array:
  """out[y, x] = image[y, floor(x + 0.5 + pixels)]: content moves left by `pixels`."""
  return _translate(image, 0.0, pixels)


def translate_y(image: jax.Array, pixels: jax.Array) -> jax.Array:
  """out[y, x] = image[floor(y + 0.5 + pixels), x]: content moves up by `pixels`."""
  return _translate(image, pixels, 0.0)


def rotate(image: jax.Array, degrees: jax.Array) -> jax.Array:
  """`Image.rotate(degrees)` (counter-clockwise about (W/2, H/2), nearest), outside = FILL.

  Pillow maps output pixel (x, y) to source (a·(x+½) + b·(y+½) + c, d·(x+½) + e·(y+½) + f) with
  a = e = cos θ, b = −d = sin θ, θ = −degrees, in 16.16 fixed point (`affine_fixed`); so does this.
  """
  height, width, _ = image.shape
  angle = -jnp.deg2rad(degrees)
  a, b, d, e = jnp.cos(angle), jnp.sin(angle), -jnp.sin(angle), jnp.cos(angle)
  centre_x, centre_y = width / 2, height / 2
  c = a * -centre_x + b * -centre_y + centre_x
  f = d * -centre_x + e * -centre_y + centre_y
  fix = lambda v: jnp.floor(v * 65536.0 + 0.5).astype(jnp.int32)
  y, x = _pixel_grid(height, width)
  source_x = (fix(c + a * 0.5 + b * 0.5) + y * fix(b) + x * fix(a)) >> 16
  source_y = (fix(f + d * 0.5 + e * 0.5) + y * fix(e) + x * fix(d)) >> 16
  return _sample_nearest(image, source_y, source_x)


def _cubic(v1, v2, v3, v4, t):
  """Pillow's BICUBIC macro: the a = −1 cubic through v2 (t = 0) and v3 (t = 1)."""
  return v2 + t * ((v3 - v1) + t * ((2 * (v1 - v2) + v3 - v4) + t * (-v1 + v2 - v3 + v4)))


def _sample_bicubic(image: jax.Array, source_y: jax.Array, source_x: jax.Array) -> jax.Array:
  """Pillow's `bicubic_filter32RGB` at float source points (H, W) given in pixel-edge units.

  Points outside [0, W) × [0, H) give FILL; taps beyond the border repeat the edge pixel; the
  result is clipped to [0, 255] and truncated.
  """
  height, width, _ = image.shape
  inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
  u, v = source_x - 0.5, source_y - 0.5
  left, top = jnp.floor(u), jnp.floor(v)
  dx, dy = (u - left)[..., None], (v - top)[..., None]
  columns = [jnp.clip(left.astype(jnp.int32) + i, 0, width - 1) for i in (-1, 0, 1, 2)]
  pixels = image.astype(jnp.float32)
  rows = []
  for j in (-1, 0, 1, 2):
    row = jnp.clip(top.astype(jnp.int32) + j, 0, height - 1)
    rows.append(_cubic(*(pixels[row, column] for column in columns), dx))
  value = jnp.floor(jnp.clip(_cubic(*rows, dy), 0.0, 255.0)).astype(jnp.uint8)
  return jnp.where(inside[..., None], value, jnp.uint8(FILL))


def shear_x(image: jax.Array, shear: jax.Array) -> jax.Array:
  """`transform(AFFINE, (1, shear, 0, 0, 1, 0), BICUBIC)`: out(x, y) = in(x + shear·y, y)."""
  y, x = _pixel_grid(*image.shape[:2])
  return _sample_bicubic(image, y + 0.5, (x + 0.5) + shear * (y + 0.5))


def shear_y(image: jax.Array, shear: jax.Array) -> jax.Array:
  """`transform(AFFINE, (1, 0, 0, shear, 1, 0), BICUBIC)`: out(x, y) = in(x, y + shear·x)."""
  y, x = _pixel_grid(*image.shape[:2])
  return _sample_bicubic(image, shear * (x + 0.5) + (y + 0.5), x + 0.5)


def color(image: jax.Array, factor: jax.Array) -> jax.Array:
  """`ImageEnhance.Color`: blend with the image's greyscale (L) version."""
  return _blend(_luminance(image)[..., None], image, factor)


def contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
  """`ImageEnhance.Contrast`: blend with the mean luminance rounded half up, int(mean + 0.5)."""
  luminance = _luminance(image)
  return _blend((2 * luminance.sum() + luminance.size) // (2 * luminance.size), image, factor)


def brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
  """`ImageEnhance.Brightness`: blend with black."""
  return _blend(jnp.zeros_like(image), image, factor)


def sharpness(image: jax.Array, factor: jax.Array) -> jax.Array:
  """`ImageEnhance.Sharpness`: blend with `ImageFilter.SMOOTH`, the 3×3 kernel [[1,1,1],[1,5,1],
  [1,1,1]]/13 rounded to nearest; Pillow leaves the one-pixel border unfiltered."""
  height, width, _ = image.shape
  pixels = image.astype(jnp.int32)
  padded = jnp.pad(pixels, [(1, 1), (1, 1), (0, 0)])
  total = sum(padded[i:i + height, j:j + width] for i in range(3) for j in range(3)) + 4 * pixels
  smooth = (2 * total + 13) // 26  # round(total / 13); never a tie, 13 being odd
  y, x = _pixel_grid(height, width)
  interior = (y > 0) & (y < height - 1) & (x > 0) & (x < width - 1)
  return _blend(jnp.where(interior[..., None], smooth, pixels), image, factor)


def posterize(image: jax.Array, bits: jax.Array) -> jax.Array:
  """`ImageOps.posterize`: keep the `bits` high bits of each value."""
  shift = (8 - bits).astype(jnp.uint8)
  return (image >> shift) << shift


def solarize(image: jax.Array, threshold: jax.Array) -> jax.Array:
  """`ImageOps.solarize`: values >= `threshold` become 255 − value."""
  return jnp.where(image.astype(jnp.float32) < threshold, image, 255 - image)


@functools.cache
def _autocontrast_rounded_down() -> np.ndarray:
  """Sorted keys (lo·256 + hi)·256 + v of the (lo, hi, v) where Pillow's float64 autocontrast map,
  int(v·s − lo·s) with s = 255/(hi − lo), is one below the exact ⌊255 (v − lo)/(hi − lo)⌋.

  This happens only where the exact value is an integer (12,094 of the 2.8 M triples); numpy's
  float64 reproduces Pillow's Python arithmetic, so the table makes `autocontrast` bit-exact.
  """
  keys = []
  for span in range(1, 256):
    scale = 255.0 / span
    low = np.arange(256 - span)[:, None]
    value = low + np.arange(span + 1)
    pillow = np.trunc(value * scale + -low * scale)
    low_index, step = np.nonzero(pillow < (255 * (value - low)) // span)
    lo = low[low_index, 0]
    keys.append((lo * 256 + lo + span) * 256 + lo + step)
  return np.sort(np.concatenate(keys)).astype(np.int32)


def autocontrast(image: jax.Array, unused: jax.Array) -> jax.Array:
  """`ImageOps.autocontrast` (cutoff 0), per channel: v -> 255 (v − lo)/(hi − lo), truncated as
  Pillow's float64 arithmetic truncates it; a constant channel is left unchanged."""
  del unused
  pixels = image.astype(jnp.int32)
  lo, hi = pixels.min(axis=(0, 1)), pixels.max(axis=(0, 1))
  values = jnp.arange(256)[:, None]  # the map as a (256, C) table, then looked up
  keys = (lo * 256 + hi) * 256 + values
  table = jnp.asarray(_autocontrast_rounded_down())
  found = table[jnp.clip(jnp.searchsorted(table, keys), 0, table.size - 1)] == keys
  stretched = (255 * (values - lo)) // jnp.maximum(hi - lo, 1) - found.astype(jnp.int32)
  mapped = jnp.where(hi > lo, stretched, values)
  return jnp.take_along_axis(mapped, pixels.reshape(-1, pixels.shape[-1]), axis=0).reshape(
      image.shape).astype(jnp.uint8)


def equalize(image: jax.Array, unused: jax.Array) -> jax.Array:
  """`ImageOps.equalize`, per channel with histogram h over N pixels and top value t:
  step = (N − h[t]) // 255, v -> min(255, (step // 2 + Σ_{u<v} h[u]) // step); unchanged when
  step = 0 or the channel is constant."""
  del unused
  channels = jnp.moveaxis(image, -1, 0).reshape(image.shape[-1], -1).astype(jnp.int32)

  def one_channel(values):
    histogram = jnp.bincount(values, length=256)
    step = (values.size - histogram[values.max()]) // 255
    below = jnp.cumsum(histogram) - histogram
    table = jnp.minimum((step // 2 + below) // jnp.maximum(step, 1), 255)
    return jnp.where(step > 0, table[values], values)  # step > 0 implies two or more values

  equalized = jax.vmap(one_channel)(channels)
  return jnp.moveaxis(equalized.reshape(image.shape[-1], *image.shape[:2]), 0, -1).astype(
      jnp.uint8)


def invert(image: jax.Array, unused: jax.Array) -> jax.Array:
  """`ImageOps.invert`: 255 − value."""
  del unused
  return 255 - image


# Every op as `fn(image uint8 (H, W, 3), argument float32) -> uint8`, by the reference's name.
OPS = {
    'shearX': shear_x, 'shearY': shear_y, 'translateX': translate_x, 'translateY': translate_y,
    'rotate': rotate, 'color': color, 'posterize': posterize, 'solarize': solarize,
    'contrast': contrast, 'sharpness': sharpness, 'brightness': brightness,
    'autocontrast': autocontrast, 'equalize': equalize, 'invert': invert,
}


@functools.cache
def _policy_arrays(policy: tuple, height: int, width: int):
  """The ops the policy uses (in `OPS` order), then per row and step: index into those ops
  (S, 2) int32, probability (S, 2) float32, argument for sign −1 and +1 (S, 2, 2) float32."""
  used = tuple(name for name in OPS if any(name in (row[1], row[4]) for row in policy))
  ops = np.array([[used.index(row[1]), used.index(row[4])] for row in policy], np.int32)
  probabilities = np.array([[row[0], row[3]] for row in policy], np.float32)
  arguments = np.array([[[op_argument(op, level, sign, height, width) for sign in (-1, 1)]
                         for op, level in (row[1:3], row[4:6])] for row in policy], np.float32)
  return used, ops, probabilities, arguments


def apply_policy(images: jax.Array, key: jax.Array, policy: tuple) -> jax.Array:
  """An AutoAugment policy (rows (p1, op1, level1, p2, op2, level2), e.g. `CIFAR10_POLICY`) on
  uint8 images (B, H, W, 3) -> uint8 (B, H, W, 3).

  Example b uses `fold_in(key, b)`: a uniform row, then for each of its two steps a uniform u
  (applied when u < p) and a fair sign. Under `vmap` every op the policy uses is evaluated and one
  selected; the two steps share one compiled body (`lax.scan`).
  """
  if images.shape[-1] != 3:
    raise ValueError(f'images.shape={images.shape}: AutoAugment needs RGB images (B, H, W, 3)')
  used, *tables = _policy_arrays(policy, *images.shape[1:3])
  ops, probabilities, arguments = map(jnp.asarray, tables)
  branches = [OPS[name] for name in used]

  def one(image, example_key):
    choice_key, *step_keys = jax.random.split(example_key, 3)
    row = jax.random.randint(choice_key, (), 0, len(policy))

    def step(image, step_and_key):
      index, step_key = step_and_key
      apply_key, sign_key = jax.random.split(step_key)
      argument = arguments[row, index, jax.random.bernoulli(sign_key).astype(jnp.int32)]
      changed = jax.lax.switch(ops[row, index], branches, image, argument)
      applied = jax.random.uniform(apply_key) < probabilities[row, index]
      return jnp.where(applied, changed, image), None

    return jax.lax.scan(step, image, (jnp.arange(2), jnp.stack(step_keys)))[0]

  return jax.vmap(one)(images, random_utils.per_example_keys(key, images.shape[0]))


__all__ = ['CIFAR10_POLICY', 'FILL', 'MAGNITUDES', 'OPS', 'POLICIES', 'SVHN_POLICY',
           'apply_policy', 'autocontrast', 'brightness', 'color', 'contrast', 'equalize', 'invert',
           'op_argument', 'posterize', 'rotate', 'sharpness', 'shear_x', 'shear_y', 'solarize',
           'translate_x', 'translate_y']
