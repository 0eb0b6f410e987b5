"""The supports of the data pipeline's random choices against their references (issue #28):
every value the reference can draw is reached, nothing outside it, with the reference's frequencies.

* `random_crop`: torchvision RandomCrop(H, padding=p): offsets (top, left) uniform over {0..2p}².
* `random_flip`: a fair coin per example.
* `cutout`: the AMP reference's Cutout (DeVries & Taylor): centre (y, x) uniform over
  [0, H) × [0, W), rows [y − length//2, y + length//2) ∩ [0, H), the same columns around x.
* `make_epoch_batches_fn`: each epoch is the first steps·B entries of a uniform permutation of the
  N real examples: every example at every position, none twice in an epoch, never a padding row.

Each draw is decoded from the sampler's output (not from its keys), so a shifted range, a swapped
axis or a lost last value fails here even when every formula is right.
"""
import jax
import numpy as np
import pytest

from robust_jax import data, sharding
from robust_jax.data import pipeline
from tests.helpers import assert_frequencies


# ----------------------------------------------------------------------------- random crop
def _position_coded(batch, height, width):
  """uint8 (batch, H, W, 1) whose pixel (r, c) is r·W + c + 1 (0 is left for the padding)."""
  codes = (np.arange(height * width) + 1).reshape(1, height, width, 1)
  return np.repeat(codes, batch, 0).astype(np.uint8)


def _crop_offsets(crops, padding, width):
  """(top, left) of each crop of `_position_coded` images, from its first non-padding pixel."""
  batch, height, _, _ = crops.shape
  flat = crops[..., 0].reshape(batch, -1)
  first = np.argmax(flat > 0, axis=1)  # the window always overlaps the image when padding < H
  i, j = np.divmod(first, width)
  row, column = np.divmod(flat[np.arange(batch), first].astype(int) - 1, width)
  return row + padding - i, column + padding - j


@pytest.mark.parametrize('padding', [1, 2])
def test_crop_offsets_cover_exactly_zero_to_two_p_uniformly(padding):
  """torchvision's RandomCrop(H, padding=p): top and left each uniform over {0, ..., 2p}."""
  height, width, batch = 4, 5, 2500
  images = _position_coded(batch, height, width)
  crops = np.asarray(jax.jit(pipeline.random_crop, static_argnums=(2, 3))(
      images, jax.random.key(11), padding, 0))
  top, left = _crop_offsets(crops, padding, width)
  padded = np.pad(images, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
  for b in range(0, batch, 97):  # the decoded window is the crop, exactly
    np.testing.assert_array_equal(crops[b], padded[b, top[b]:top[b] + height,
                                                   left[b]:left[b] + width])
  side = 2 * padding + 1
  assert set(zip(top.tolist(), left.tolist())) == {(t, s) for t in range(side)
                                                   for s in range(side)}
  counts = np.zeros((side, side))
  np.add.at(counts, (top, left), 1)
  assert_frequencies(counts, np.ones((side, side)), 'crop offsets')


def test_crop_with_no_padding_is_the_identity():
  images = _position_coded(8, 4, 5)
  crop = jax.jit(pipeline.random_crop, static_argnums=2)
  np.testing.assert_array_equal(crop(images, jax.random.key(0), 0), images)


def test_flip_is_a_fair_coin_per_example():
  images = _position_coded(10000, 2, 3)
  flipped = np.asarray(jax.jit(pipeline.random_flip)(images, jax.random.key(4)))
  is_flipped = np.all(flipped == images[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(is_flipped | np.all(flipped == images, axis=(1, 2, 3)))
  assert_frequencies([is_flipped.sum(), (~is_flipped).sum()], [0.5, 0.5], 'flips')


# ----------------------------------------------------------------------------- Cutout
def _hole_interval(hole_any):
  """(start, stop) of the True run of each row of `hole_any` (B, n); every run must be one run."""
  start = np.argmax(hole_any, axis=1)
  stop = hole_any.shape[1] - np.argmax(hole_any[:, ::-1], axis=1)
  assert np.all(hole_any.sum(1) == stop - start), 'the hole is not one interval'
  return start, stop


def _centres(start, stop, size, half):
  """The centre c of the reference's [c − half, c + half) ∩ [0, size) that gives [start, stop)."""
  centre = np.where(start > 0, start + half, stop - half)
  np.testing.assert_array_equal(start, np.maximum(centre - half, 0))
  np.testing.assert_array_equal(stop, np.minimum(centre + half, size))
  return centre


def test_cutout_centres_cover_every_pixel_uniformly_with_the_references_clipped_square():
  """H ≠ W (5 × 7) so that swapped axes fail; length 4: every (y, x) in [0, 5) × [0, 7) reached
  (the last row and column included), none outside, each with probability 1/35."""
  height, width, length, batch = 5, 7, 4, 3500
  images = np.ones((batch, height, width, 2), np.float32)
  out = np.asarray(jax.jit(pipeline.cutout, static_argnums=2)(images, jax.random.key(5), length))
  hole = out == 0
  assert np.all(hole == hole[..., :1]) and np.all(out[~hole] == 1)  # every channel, zeros only
  hole = hole[..., 0]
  rows, columns = hole.any(2), hole.any(1)
  np.testing.assert_array_equal(hole, rows[:, :, None] & columns[:, None, :])  # a rectangle
  centre_y = _centres(*_hole_interval(rows), height, length // 2)
  centre_x = _centres(*_hole_interval(columns), width, length // 2)
  assert set(zip(centre_y.tolist(), centre_x.tolist())) == {
      (y, x) for y in range(height) for x in range(width)}
  counts = np.zeros((height, width))
  np.add.at(counts, (centre_y, centre_x), 1)
  assert_frequencies(counts, np.ones((height, width)), 'Cutout centres')


def test_cutout_of_odd_length_is_the_references_even_square():
  """The reference clips [y − length//2, y + length//2): length 5 cuts what length 4 cuts."""
  images = np.ones((64, 9, 9, 1), np.float32)
  key = jax.random.key(8)
  cutout = jax.jit(pipeline.cutout, static_argnums=2)
  odd = np.asarray(cutout(images, key, 5))
  np.testing.assert_array_equal(odd, cutout(images, key, 4))
  assert (odd == 0).sum(axis=(1, 2, 3)).max() == 16


# ----------------------------------------------------------------------------- epoch order
def _epoch_labels(mesh, num_examples, batch_size, keys):
  """(len(keys), steps, B) labels of the epochs drawn with `keys`; label i + 1 is example i, so
  the zero labels of the padding rows (`put_split`) stand out."""
  images = np.zeros((num_examples, 1, 1, 1), np.uint8)
  split = data.Split(images, np.arange(1, num_examples + 1, dtype=np.int32))
  device_split = pipeline.put_split(split, mesh)
  fn = pipeline.make_epoch_batches_fn(mesh, device_split.num_examples, batch_size)
  return np.stack([np.asarray(fn(device_split.images, device_split.labels, key)['label'])
                   for key in keys])


def test_every_example_reaches_every_epoch_position_and_none_repeats():
  """N = 19, B = 8: 2 steps of 8 (3 examples left out per epoch). Over 500 epochs every example
  appears at every one of the 16 positions, uniformly (a permutation of all N, cut), none
  twice within an epoch, and the epochs all differ."""
  num_examples, batch_size, num_epochs = 19, 8, 500
  keys = jax.random.split(jax.random.key(21), num_epochs)
  epochs = _epoch_labels(sharding.make_mesh(jax.devices()[:1]), num_examples, batch_size, keys)
  assert epochs.shape == (num_epochs, 2, batch_size)
  orders = epochs.reshape(num_epochs, -1) - 1  # example indices
  assert orders.min() == 0 and orders.max() == num_examples - 1
  for order in orders:
    assert len(set(order.tolist())) == order.size  # no repeat within an epoch
  counts = np.zeros((orders.shape[1], num_examples))  # (position, example)
  np.add.at(counts, (np.broadcast_to(np.arange(orders.shape[1]), orders.shape), orders), 1)
  assert np.all(counts > 0), 'an example never reaches some epoch position'
  assert_frequencies(counts, np.ones_like(counts), 'epoch positions')
  assert len({order.tobytes() for order in orders}) == num_epochs  # every epoch its own order


def test_epochs_never_draw_padding_rows_and_match_on_one_and_eight_devices(eight_devices):
  """19 examples on 8 devices are padded to 24 rows (`put_split`); no epoch draws a padding row
  (label 0 here), and the orders equal the 1-device ones."""
  keys = jax.random.split(jax.random.key(22), 40)
  on_one = _epoch_labels(sharding.make_mesh(eight_devices[:1]), 19, 8, keys)
  on_eight = _epoch_labels(sharding.make_mesh(eight_devices), 19, 8, keys)
  np.testing.assert_array_equal(on_one, on_eight)
  assert on_eight.min() >= 1
  assert set(on_eight.ravel().tolist()) == set(range(1, 20))
