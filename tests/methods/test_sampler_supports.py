"""The supports of the methods' random choices against their references (issue #28): every value
the reference can draw is reached (the last one included), nothing outside it, with the
reference's frequencies; masks keyed per example agree on 1 and 8 devices.

* LFM, mode 'official_code' (`lfm.official_code_boxes`, `official_code_stripes`, the channels of
  `official_code_mask`): the released code's `CREP` and `RandChannelDropout`
  (finger-monkey/beyond_dropout model.py, papers.md 3.2): h, w = round(√(area·aspect)),
  round(√(area/aspect)) accepted when h < H and w < W; x1 = randint(0, H − h) and
  y1 = randint(0, W − w), Python's randint, both ends included; channels randint(0, C − 1), with
  replacement, shared by the batch. The (h, w) law is integrated on a fine grid of (area, aspect),
  and the stripes are the code's literal `plane[y1:y1+h][x1:x1+w]` over every box.
* LFM, mode 'paper' (`lfm.local_feature_mask`): the same positions over {0..H−h} × {0..W−w} for
  h, w clipped to [1, H−1] × [1, W−1] (the module docstring); round(fraction·C) distinct channels,
  every subset equally likely.
* DropAttack (`dropattack.gradient`) and dropout (`models.base.per_example_dropout`,
  `random_utils.per_example_bernoulli`): Bernoulli masks, M = 1 with probability p (attacked) or
  1 − rate (kept); example b's row from fold_in(key, b), so the same on 1 and 8 devices.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import sharding
from robust_jax.methods import dropattack, lfm
from robust_jax.models import base as model_base
from tests.helpers import assert_frequencies, assert_rate

AREA, ASPECT = (0.02, 0.4), (0.3, 1 / 0.3)  # the released code's CREP(sl, sh, r1)


@functools.lru_cache(maxsize=None)
def _size_law(height, width, clip, grid=1200):
  """P[h, w] (H + 1, W + 1) of one box size: area ~ U(AREA)·H·W, aspect ~ U(ASPECT) integrated on
  a grid of cell midpoints; `clip` False: the code's CREP (first candidate with h < H, w < W kept),
  True: mode 'paper' (h, w clipped to [1, H − 1], [1, W − 1])."""
  midpoints = lambda low, high: low + (high - low) * (np.arange(grid) + 0.5) / grid
  area = midpoints(*AREA)[:, None] * height * width
  aspect = midpoints(*ASPECT)[None, :]
  h = np.round(np.sqrt(area * aspect)).astype(int)  # half to even, like Python's round
  w = np.round(np.sqrt(area / aspect)).astype(int)
  if clip:
    h, w, kept = np.clip(h, 1, height - 1), np.clip(w, 1, width - 1), np.ones(h.shape, bool)
  else:
    kept = (h < height) & (w < width)
  law = np.zeros((height + 1, width + 1))
  np.add.at(law, (h[kept], w[kept]), 1)
  return law / law.sum()


def _position_law(size_law, size):
  """P[s, offset] (size + 1, size + 1) of (h, x1): h ~ size_law, x1 uniform over {0..size − h}."""
  law = np.zeros((size + 1, size + 1))
  for s, p in enumerate(size_law):
    law[s, :size - s + 1] = p / (size - s + 1)
  return law


def _table(rows, columns, shape):
  counts = np.zeros(shape)
  np.add.at(counts, (np.asarray(rows), np.asarray(columns)), 1)
  return counts


def _assert_every_last_position(size, offset, size_law, draws, what):
  """For every size drawn often enough, the last offset size_max − size is reached."""
  for s in np.flatnonzero(size_law * draws >= 60):
    last = len(size_law) - 1 - s
    assert np.any((size == s) & (offset == last)), f'{what}: size {s} never at offset {last}'


# ----------------------------------------------------------------------------- LFM official code
def test_official_code_boxes_draw_crep_sizes_and_every_position_including_the_last():
  """H = 6, W = 5 (unequal, so that swapped ranges fail): (h, w) with CREP's law, x1 uniform over
  {0..H − h} and y1 over {0..W − w}, Python randint's inclusive ends reached."""
  height, width, draws = 6, 5, 20000
  boxes = jax.jit(lfm.official_code_boxes, static_argnums=(1, 2, 3))(
      jax.random.key(0), (draws,), height, width)
  h, w, x1, y1 = (np.asarray(a) for a in boxes)
  law = _size_law(height, width, clip=False)
  assert_frequencies(_table(h, w, law.shape), law, 'CREP (h, w)')
  assert set(zip(h.tolist(), w.tolist())) >= {tuple(c) for c in np.argwhere(law * draws >= 10)}
  for size, offset, size_law, full, what in ((h, x1, law.sum(1), height, 'x1'),
                                             (w, y1, law.sum(0), width, 'y1')):
    assert np.all((offset >= 0) & (offset <= full - size)), f'{what} outside {{0..size − h}}'
    _assert_every_last_position(size, offset, size_law, draws, what)
    assert_frequencies(_table(size, offset, (full + 1, full + 1)),
                       _position_law(size_law, full), f'(size, {what})')


def _code_stripe_law(height, width):
  """{(start, stop) or None (empty): probability} of the rows the code's
  `plane[y1:y1 + h][x1:x1 + w] = v` fills, over CREP's boxes, by literal numpy slicing."""
  law = {}
  for (h, w), p in np.ndenumerate(_size_law(height, width, clip=False)):
    if p == 0:
      continue
    for x1, y1 in itertools.product(range(height - h + 1), range(width - w + 1)):
      plane = np.zeros((height, width))
      plane[y1:y1 + h][x1:x1 + w] = 1
      rows = np.flatnonzero(plane[:, 0])
      assert np.all(plane[rows] == 1) and np.all(np.diff(rows) == 1)  # full-width, one run
      stripe = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else None
      law[stripe] = law.get(stripe, 0.0) + p / ((height - h + 1) * (width - w + 1))
  return law


@pytest.mark.parametrize('height,width', [(6, 5), (4, 7)])
def test_official_code_stripes_have_the_literal_slicings_law(height, width):
  """Every stripe the code's double row slice can fill, with its probability (the empty one and
  the stripes ending at the last row included); nothing else. (4, 7): y1 may pass H − h, where
  the first slice is cut at row H."""
  draws = 20000
  start, stop = (np.asarray(a) for a in jax.jit(
      lfm.official_code_stripes, static_argnums=(1, 2, 3))(jax.random.key(1), (draws,),
                                                           height, width))
  law = _code_stripe_law(height, width)
  cells = sorted(law, key=lambda s: (-1, -1) if s is None else s)
  ours = [None if b <= a else (int(a), int(b)) for a, b in zip(start, stop)]
  outside = set(ours) - set(law)
  assert not outside, f'stripes the code never fills: {sorted(outside)[:5]}'
  counts = np.array([ours.count(c) for c in cells])
  assert_frequencies(counts, [law[c] for c in cells], 'stripes')
  assert any(c is not None and c[1] == height for c in ours)  # the last row is reached
  assert set(ours) >= {c for c in cells if law[c] * draws >= 10}


@jax.jit
def _official_channels(keys, probability):
  """(keys, C) bool: channel c masked in some example, one official-code mask per key (8
  examples of a 6 × 5 map, C = 4, the first 8 masked, round(0.5 · 4) = 2 channel draws)."""
  features = jnp.ones((8, 6, 5, 4))
  mask = lambda key: lfm.official_code_mask(features, key, probability=probability,
                                            channel_fraction=0.5, fill='zero', num_samples=8)
  # lax.map: compiles faster than vmap here
  return jax.lax.map(lambda key: jnp.any(mask(key) == 0, axis=(0, 1, 2)), keys)


def test_official_code_channels_are_every_channel_with_replacement_shared_by_the_batch():
  """Two draws of randint(0, C − 1) per batch, with replacement: the set of masked channels is
  {c} with probability 1/16 and {c, d} with 2/16, for every channel, the last included, and the
  8 examples together mask no other channel (the draws are shared by the batch). One coin per
  batch: P(any masking) = p."""
  keys = jax.random.split(jax.random.key(2), 2000)
  masked = np.asarray(_official_channels(keys, 1.0))
  assert masked.sum(1).max() <= 2
  assert np.mean(masked.sum(1) == 0) < 0.01  # (all 8 stripes of both draws may be empty)
  outcomes = [(c,) for c in range(4)] + list(itertools.combinations(range(4), 2))
  index = {outcome: i for i, outcome in enumerate(outcomes)}
  drawn = [index[tuple(np.flatnonzero(row))] for row in masked if row.any()]
  counts = np.bincount(drawn, minlength=len(outcomes))
  assert np.all(counts > 0)
  assert_frequencies(counts, [1] * 4 + [2] * 6, 'sets of official-code channels')
  coin = np.asarray(_official_channels(keys, 0.3)).any(1)
  assert abs(coin.mean() - 0.3) < 0.05  # 5 standard errors; all-empty stripes are rarer


# ----------------------------------------------------------------------------- LFM paper mode
def _paper_boxes(features, key):
  """(h, top, w, left) per (example, channel) of `local_feature_mask`'s zero boxes on `features`
  (ones, every channel masked)."""
  masked = np.asarray(jax.jit(functools.partial(
      lfm.local_feature_mask, probability=1.0, channel_fraction=1.0, fill='zero'))(features, key))
  hole = np.moveaxis(masked == 0, 3, 1).reshape(-1, *masked.shape[1:3])  # (B·C, H, W)
  assert np.all(masked[masked != 0] == 1)
  rows, columns = hole.any(2), hole.any(1)
  np.testing.assert_array_equal(hole, rows[:, :, None] & columns[:, None, :])  # rectangles
  result = []
  for line in (rows, columns):
    start = np.argmax(line, axis=1)
    size = line.sum(1)
    assert np.all(line[np.arange(len(line)), start + size - 1])  # one run
    result += [size, start]
  return result


def test_paper_mode_boxes_reach_every_position_of_every_clipped_size():
  """H = 6, W = 5: h in [1, 5], w in [1, 4] with the clipped law; top uniform over {0..H − h},
  left over {0..W − w}, the last position included, nothing outside."""
  height, width = 6, 5
  h, top, w, left = _paper_boxes(jnp.ones((2500, height, width, 4)), jax.random.key(3))
  law = _size_law(height, width, clip=True)
  assert_frequencies(_table(h, w, law.shape), law, 'paper (h, w)')
  assert set(h.tolist()) == set(range(1, height)) and set(w.tolist()) == set(range(1, width))
  for size, offset, size_law, full, what in ((h, top, law.sum(1), height, 'top'),
                                             (w, left, law.sum(0), width, 'left')):
    _assert_every_last_position(size, offset, size_law, h.size, what)
    assert_frequencies(_table(size, offset, (full + 1, full + 1)),
                       _position_law(size_law, full), f'(size, {what})')


def test_paper_mode_channels_are_every_subset_equally_often():
  """round(0.5 · 4) = 2 distinct channels per example: each of the 6 pairs with probability 1/6."""
  features = jnp.ones((3000, 2, 2, 4))
  masked = jax.jit(functools.partial(lfm.local_feature_mask, probability=1.0,
                                     channel_fraction=0.5, fill='zero'))(features,
                                                                         jax.random.key(4))
  chosen = np.asarray(jnp.any(masked == 0, axis=(1, 2)))  # (B, C)
  np.testing.assert_array_equal(chosen.sum(1), 2)
  pairs = list(itertools.combinations(range(4), 2))
  index = {pair: i for i, pair in enumerate(pairs)}
  drawn = [index[tuple(np.flatnonzero(row))] for row in chosen]
  assert_frequencies(np.bincount(drawn, minlength=6), np.ones(6), 'channel pairs')


# ----------------------------------------------------------------------------- DropAttack masks
def _recording_loss(params, inputs, key, *, state):
  """Linear loss (every gradient coordinate 1) whose state records the point it was evaluated at,
  so the final state shows the last attack term's perturbation R = ε · M / ||1||."""
  del key, state
  loss = jnp.sum(inputs) + sum(jnp.sum(v) for v in params.values())
  return loss, {'x': inputs, **params}


@functools.partial(jax.jit, static_argnames=('attack_input',))
def _dropattack_point(params, inputs, key, probability, attack_input):
  """The last term's point (the input term alone, or the weight term alone) of K = 1 DropAttack."""
  state = {'x': jnp.zeros_like(inputs), **jax.tree.map(jnp.zeros_like, params)}
  return dropattack.gradient(
      _recording_loss, params, inputs, key, attack_probability=probability, num_steps=1,
      input_epsilon=1.0, input_norm='per_example', weight_paths=tuple(params),
      weight_epsilon=1.0, attack_input=attack_input, attack_weights=not attack_input,
      state=state).state


def test_dropattack_input_masks_are_bernoulli_p_per_example_and_device_count_independent(
    eight_devices):
  """M_x ~ Bernoulli(p) per coordinate (1 = attacked): both values, rate p, rows differ between
  examples, and example b's row is the same in a batch of 400 on 1 device and in a batch of its
  first 16 rows sharded over 8 devices."""
  params = {'w': jnp.zeros((3,))}
  inputs = jnp.zeros((400, 10))
  key = jax.random.key(5)
  attacked = np.asarray(_dropattack_point(params, inputs, key, 0.3, True)['x']) != 0
  assert attacked.any() and not attacked.all()
  assert_rate(attacked, 0.3, 'attacked input coordinates')
  assert len({row.tobytes() for row in attacked}) > 100
  mask_key = jax.random.split(key, 5)[1]  # `gradient`'s documented key contract
  for b in (0, 399):  # row b from fold_in(mask key, b), whatever the batch
    np.testing.assert_array_equal(
        jax.random.bernoulli(jax.random.fold_in(mask_key, b), 0.3, (10,)), attacked[b])
  mesh = sharding.make_mesh(eight_devices)
  sharded = jax.device_put(inputs[:16], sharding.batch_sharded(mesh))
  on_eight = np.asarray(_dropattack_point(params, sharded, key, 0.3, True)['x']) != 0
  np.testing.assert_array_equal(on_eight, attacked[:16])


def test_dropattack_weight_masks_are_bernoulli_p_per_tensor_and_shared_by_the_batch():
  """M_W ~ Bernoulli(p) per coordinate of each attacked tensor: rate p, each tensor its own
  mask, the same whatever the batch."""
  params = {'a': jnp.zeros((40, 25)), 'b': jnp.zeros((40, 25))}
  key = jax.random.key(6)
  point = _dropattack_point(params, jnp.zeros((4, 2)), key, 0.7, False)
  masks = {name: np.asarray(point[name]) != 0 for name in params}
  for name, attacked in masks.items():
    assert attacked.any() and not attacked.all()
    assert_rate(attacked, 0.7, f'attacked coordinates of {name}')
  assert not np.array_equal(masks['a'], masks['b'])
  other_batch = _dropattack_point(params, jnp.ones((9, 2)), key, 0.7, False)
  np.testing.assert_array_equal(np.asarray(other_batch['a']) != 0, masks['a'])


# ----------------------------------------------------------------------------- dropout masks
@functools.partial(jax.jit, static_argnames=('rate',))
def _dropout(x, key, rate):
  return model_base.per_example_dropout(x, rate, key)


def test_dropout_keeps_with_probability_one_minus_rate_per_example_on_any_device_count(
    eight_devices):
  """Inverted dropout: kept (x / (1 − rate)) with probability 1 − rate, else 0; rows differ
  between examples; example b's mask (`random_utils.per_example_bernoulli`, fold_in(key, b)) is
  the same in a batch of 500 on 1 device and in a batch of 16 on 8 devices."""
  x = jnp.ones((500, 12))
  key = jax.random.key(7)
  out = np.asarray(_dropout(x, key, 0.3))
  kept = out != 0
  np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
  assert kept.any() and not kept.all()
  assert_rate(kept, 0.7, 'kept units')
  assert len({row.tobytes() for row in kept}) > 100
  for b in (0, 499):  # row b kept where Bernoulli(1 − rate) from fold_in(key, b) says so
    np.testing.assert_array_equal(
        jax.random.bernoulli(jax.random.fold_in(key, b), 0.7, (12,)), kept[b])
  mesh = sharding.make_mesh(eight_devices)
  sharded = jax.device_put(x[:16], sharding.batch_sharded(mesh))
  np.testing.assert_array_equal(np.asarray(_dropout(sharded, key, 0.3)), out[:16])
