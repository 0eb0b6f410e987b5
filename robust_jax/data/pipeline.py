"""On-device data: datasets live on the accelerators as uint8, sharded over the batch axis.

Shuffling and augmentation run in jitted code, so training makes no per-step host round trip.
Every random choice is keyed by the example's position in the global batch (`random_utils`), so the
same config and seed give the same batches on 1 or 8 devices.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from robust_jax import random_utils
from robust_jax.data.arrays import Split
from robust_jax.sharding import DATA_AXIS


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
  """A split on the devices. `images` uint8 (N', H, W, C), `labels` int32 (N',), sharded over N'.

  N' is `num_examples` rounded up to a multiple of the device count (padding rows are never drawn).
  """

  images: jax.Array
  labels: jax.Array
  num_examples: int


def put_split(split: Split, mesh: Mesh) -> DeviceSplit:
  """Places a host split on the mesh; on several hosts each host provides only its own shards."""
  padded = -len(split) % mesh.size
  images = np.pad(split.images, [(0, padded), (0, 0), (0, 0), (0, 0)])
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


def random_crop_flip(images: jax.Array, key: jax.Array, padding: int) -> jax.Array:
  """Per-example random crop after zero padding by `padding` pixels, then random horizontal flip.

  images: (B, H, W, C) float. Example b uses `fold_in(key, b)`.
  """
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)])

  def one(image, example_key):
    crop_key, flip_key = jax.random.split(example_key)
    top, left = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1)
    crop = jax.lax.dynamic_slice(image, (top, left, 0), (height, width, channels))
    return jnp.where(jax.random.bernoulli(flip_key), crop[:, ::-1], crop)

  return jax.vmap(one)(padded, random_utils.per_example_keys(key, batch))


def make_augment_fn(augmentation: str, crop_padding: int):
  """Returns `fn(images_uint8, key) -> float32 images in [0, 1]` for the named augmentation."""
  if augmentation == 'none':
    return lambda images, key: to_unit_float(images)
  return lambda images, key: random_crop_flip(to_unit_float(images), key, crop_padding)
