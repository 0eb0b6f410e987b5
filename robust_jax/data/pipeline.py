"""On-device data: datasets live on the accelerators as uint8, sharded over the batch axis.

Shuffling and augmentation run in jitted code, so training makes no per-step host round trip.
Every random choice is keyed by the example's position in the global batch (`random_utils`), so the
same config and seed give the same batches on 1 or 8 devices.

Training augmentation (`make_augment_fn`) follows the AMP reference code's order, each stage
switched by its own config key of `config.dataset`:

  1. `augmentation`: 'crop' = torchvision's RandomCrop(H, padding=`crop_padding`,
     fill=`crop_fill`), i.e. pad every side with the uint8 value `crop_fill` (the reference: 128)
     and cut an H×W window at a uniform offset; 'crop_flip' = crop, then a horizontal flip with
     probability 1/2; 'none' = neither ('default' = the dataset's `default_augmentation`).
  2. `autoaugment`: 'cifar10' / 'svhn' = one AutoAugment sub-policy per image, on uint8 values as
     Pillow does (`autoaugment.py`); 'none' = off.
  3. conversion to float32 in [0, 1] (ToTensor).
  4. `cutout_length` > 0: Cutout, one square of zeros (`cutout`); 0 = off.

The reference's recipes: CIFAR crop_flip (padding 4, fill 128) [+ autoaugment 'cifar10'] [+ cutout
16 (CIFAR-10) / 8 (CIFAR-100)]; SVHN crop (padding 2, fill 128, no flip) or, with AutoAugment,
augmentation 'none' + autoaugment 'svhn' (the reference drops the crop then) [+ cutout 20]. Its
`--autoaug` always adds Cutout. Normalisation happens inside the models.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from robust_jax import random_utils
from robust_jax.data import autoaugment
from robust_jax.data.arrays import Split
from robust_jax.sharding import DATA_AXIS

__all__ = ['CROP_AUGMENTATIONS', 'DeviceSplit', 'cutout', 'make_augment_fn',
           'make_epoch_batches_fn', 'make_eval_batches', 'put_split', 'random_crop',
           'random_crop_flip', 'random_flip', 'steps_per_epoch', 'to_unit_float']


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
  """A split on the devices. `images` uint8 (N', H, W, C) (text: int32 token ids (N', L)),
  `labels` int32 (N',), sharded over N'.

  N' is `num_examples` rounded up to a multiple of the device count (padding rows are never drawn).
  """

  images: jax.Array
  labels: jax.Array
  num_examples: int


def put_split(split: Split, mesh: Mesh) -> DeviceSplit:
  """Places a host split on the mesh; on several hosts each host provides only its own shards."""
  padded = -len(split) % mesh.size
  images = np.pad(split.images, [(0, padded)] + [(0, 0)] * (split.images.ndim - 1))
  labels = np.pad(split.labels, [(0, padded)])
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  put = lambda a: jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])
  return DeviceSplit(put(images), put(labels), len(split))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch; the last partial batch of each shuffled epoch is dropped."""
  return num_examples // batch_size


def make_epoch_batches_fn(mesh: Mesh, num_examples: int, batch_size: int):
  """Returns `fn(images, labels, key) -> {'image': (S, B, H, W, C), 'label': (S, B)}`.

  The epoch's permutation of the `num_examples` real rows is cut into S = steps_per_epoch batches of
  B examples, laid out with the batch axis sharded so that batch s is already split over the devices.
  """
  num_steps = steps_per_epoch(num_examples, batch_size)
  batched = NamedSharding(mesh, P(None, DATA_AXIS))

  @functools.partial(jax.jit, out_shardings={'image': batched, 'label': batched})
  def epoch_batches(images, labels, key):
    order = jax.random.permutation(key, num_examples)[:num_steps * batch_size]
    order = order.reshape(num_steps, batch_size)
    return {'image': images[order], 'label': labels[order]}

  return epoch_batches


def make_eval_batches(split: Split, batch_size: int, mesh: Mesh) -> dict[str, jax.Array]:
  """The whole split as (num_batches, B, ...) arrays plus a 0/1 `mask` marking real examples.

  B is `batch_size` rounded up to a multiple of the device count; the last batch is padded.
  """
  batch_size = -(-batch_size // mesh.size) * mesh.size
  num_batches = -(-len(split) // batch_size)
  padded = num_batches * batch_size - len(split)
  pad = lambda a: np.pad(a, [(0, padded)] + [(0, 0)] * (a.ndim - 1))
  host = {'image': pad(split.images), 'label': pad(split.labels),
          'mask': pad(np.ones(len(split), np.float32))}
  sharding = NamedSharding(mesh, P(None, DATA_AXIS))
  return {k: jax.make_array_from_callback(
      (num_batches, batch_size) + v.shape[1:], sharding,
      lambda index, v=v: v.reshape((num_batches, batch_size) + v.shape[1:])[index])
          for k, v in host.items()}


def to_unit_float(images: jax.Array) -> jax.Array:
  """uint8 pixels -> float32 in [0, 1], the units every attack epsilon is given in."""
  return images.astype(jnp.float32) / 255.0


def random_crop(images: jax.Array, key: jax.Array, padding: int, fill: int = 0) -> jax.Array:
  """Per-example random crop of the images padded on every side by `padding` pixels of value `fill`.

  images: (B, H, W, C), any dtype. Example b's window offset (top, left) is uniform over
  {0, ..., 2·padding}², drawn from `fold_in(key, b)`.
  """
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)],
                   constant_values=fill)

  def one(image, example_key):
    top, left = jax.random.randint(example_key, (2,), 0, 2 * padding + 1)
    return jax.lax.dynamic_slice(image, (top, left, 0), (height, width, channels))

  return jax.vmap(one)(padded, random_utils.per_example_keys(key, batch))


def random_flip(images: jax.Array, key: jax.Array) -> jax.Array:
  """Flips example b of (B, H, W, C) left-right with probability 1/2, drawn from fold_in(key, b)."""
  flip = jax.vmap(jax.random.bernoulli)(random_utils.per_example_keys(key, images.shape[0]))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def random_crop_flip(images: jax.Array, key: jax.Array, padding: int, fill: int = 0) -> jax.Array:
  """`random_crop`, then `random_flip`, with two keys split from `key`."""
  crop_key, flip_key = jax.random.split(key)
  return random_flip(random_crop(images, crop_key, padding, fill), flip_key)


def cutout(images: jax.Array, key: jax.Array, length: int) -> jax.Array:
  """Cutout (DeVries & Taylor 2017) as the AMP reference code: one square of zeros per image.

  images: (B, H, W, C). Example b draws a centre (cy, cx) uniform over the H×W pixels from
  fold_in(key, b) and zeroes rows [cy − length//2, cy + length//2) ∩ [0, H) and the same columns
  around cx, in every channel: a square of side 2·(length//2) (= length when even, as in every
  reference recipe), clipped at the borders.
  """
  batch, height, width, _ = images.shape
  half = length // 2

  def one(image, example_key):
    centre_y, centre_x = jax.random.randint(example_key, (2,), 0, jnp.array([height, width]))
    rows, columns = jnp.arange(height) - centre_y, jnp.arange(width) - centre_x
    hole = (((rows >= -half) & (rows < half))[:, None, None]
            & ((columns >= -half) & (columns < half))[None, :, None])
    return jnp.where(hole, jnp.zeros((), image.dtype), image)

  return jax.vmap(one)(images, random_utils.per_example_keys(key, batch))


_CROPS = {
    'none': lambda images, key, padding, fill: images,
    'crop': random_crop,
    'crop_flip': random_crop_flip,
}
CROP_AUGMENTATIONS = tuple(_CROPS)


def make_augment_fn(augmentation: str, crop_padding: int, crop_fill: int = 0,
                    cutout_length: int = 0, autoaugment_policy: str = 'none'):
  """Returns `fn(images, key) -> float32 (B, H, W, C) in [0, 1]` for uint8 images (B, H, W, C).

  Stages in the reference's order (module docstring): `augmentation` ('none', 'crop',
  'crop_flip') with `crop_padding` pixels of value `crop_fill`; AutoAugment `autoaugment_policy`
  ('none', 'cifar10', 'svhn'); conversion to [0, 1]; Cutout of side `cutout_length` (0 = off).
  Each stage draws from its own key split from `key`, per example by index in the global batch.
  """
  if augmentation not in _CROPS:
    raise ValueError(f'augmentation={augmentation!r}: must be one of {", ".join(_CROPS)}')
  if autoaugment_policy != 'none' and autoaugment_policy not in autoaugment.POLICIES:
    raise ValueError(f'autoaugment={autoaugment_policy!r}: must be one of none, '
                     f'{", ".join(autoaugment.POLICIES)}')
  crop = _CROPS[augmentation]

  def augment(images, key):
    crop_key, policy_key, cutout_key = jax.random.split(key, 3)
    images = crop(images, crop_key, crop_padding, crop_fill)
    if autoaugment_policy != 'none':
      images = autoaugment.apply_policy(images, policy_key,
                                        autoaugment.POLICIES[autoaugment_policy])
    images = to_unit_float(images)
    return cutout(images, cutout_key, cutout_length) if cutout_length else images

  return augment
