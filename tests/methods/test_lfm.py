"""Local feature masking (robust_jax/methods/lfm.py): the paper's boxes and the released code's
row stripes against their definitions, a sequential reference loop and a simulation of the code."""
import inspect
import math
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import data, objectives
from robust_jax.config import defaults as config_defaults, validation
from robust_jax.methods import lfm
from robust_jax.models import build_model


def test_lfm_masks_the_configured_fraction_of_channels():
  features = jnp.full((32, 12, 12, 8), 5.0)
  masked = lfm.local_feature_mask(features, jax.random.key(0), probability=1.0,
                                  channel_fraction=0.5, fill='zero')
  changed = np.asarray(jnp.any(masked != features, axis=(1, 2)))  # (B, C)
  np.testing.assert_array_equal(changed.sum(1), 4)
  area = np.asarray(jnp.mean(masked == 0, axis=(1, 2)))[changed]
  assert 0.01 <= area.min() and area.max() <= 0.5
  none = lfm.local_feature_mask(features, jax.random.key(0), probability=0.0,
                                channel_fraction=0.5)
  np.testing.assert_array_equal(none, features)
  half = lfm.local_feature_mask(jnp.full((400, 6, 6, 2), 5.0), jax.random.key(1),
                                probability=0.3, channel_fraction=1.0, fill='zero')
  assert 0.22 < float(jnp.mean(jnp.any(half == 0, axis=(1, 2, 3)))) < 0.38


def test_lfm_official_code_mode_masks_first_samples_with_row_stripes():
  features = jnp.full((12, 16, 8, 8), 5.0)
  masked = lfm.official_code_mask(features, jax.random.key(2), probability=1.0,
                                  channel_fraction=0.5, fill='zero', num_samples=8)
  changed = np.asarray(masked != features)
  assert not changed[8:].any() and changed[:8].any()
  rows = changed.any(axis=2)  # a masked row is masked across its full width
  np.testing.assert_array_equal(changed.all(axis=2), rows)


def test_lfm_only_in_training_and_only_at_configured_sites():
  config = config_defaults.default_config()
  config.model.update(widths=(4, 8), hidden_size=16)
  config.feature_mask = dict(name='lfm', sites=('conv2',), probability=1.0,
                             channel_fraction=1.0, area_range=(0.3, 0.4),
                             aspect_range=(0.5, 2.0), fill='zero', mode='paper',
                             official_code_samples=8)
  validation.validate_config(config)
  spec = data.SPECS['fashion_mnist']
  plain = build_model(config.model, spec)
  masked = build_model(config.model, spec, objectives.build_feature_transforms(config))
  params, state = plain.init(jax.random.key(0), spec.image_shape)
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  key = jax.random.key(2)
  np.testing.assert_array_equal(masked.apply(params, state, x, train=False)[0],
                                plain.apply(params, state, x, train=False)[0])
  assert not np.allclose(masked.apply(params, state, x, train=True, key=key)[0],
                         plain.apply(params, state, x, train=True, key=key)[0])
  _, intermediates = masked.module.apply({'params': params}, x, train=True,
                                         rngs={'feature_mask': key, 'dropout': key},
                                         capture_intermediates=True, mutable=['intermediates'])
  conv1 = intermediates['intermediates']['Conv_0']['__call__'][0]
  assert float(jnp.mean(conv1 == 0)) < 0.6  # conv1 untouched: only ReLU zeros, no boxes


def test_lfm_official_code_mode_equals_the_sequential_reference_loop():
  """The vectorised mask equals the released code's loop, written with its literal chained slicing
  on a (H, W) plane (later draws overwrite earlier ones)."""
  x = jax.random.normal(jax.random.key(0), (10, 16, 8, 6))
  key = jax.random.key(4)
  out = lfm.official_code_mask(x, key, probability=1.0, channel_fraction=2.0, num_samples=8)
  batch, height, width, channels = x.shape
  num_draws = 12
  _, channel_key, box_key, fill_key = jax.random.split(key, 4)
  drawn = np.asarray(jax.random.randint(channel_key, (num_draws,), 0, channels))
  h, w, x1, y1 = (np.asarray(a) for a in lfm.official_code_boxes(
      box_key, (batch, num_draws), height, width))
  values = np.asarray(jax.random.uniform(fill_key, (batch, num_draws)))
  expected = np.asarray(x).copy()
  for i in range(8):
    for j in range(num_draws):
      plane = expected[i, :, :, drawn[j]]  # the code's x[i][c], a (H, W) view
      plane[y1[i, j]:y1[i, j] + h[i, j]][x1[i, j]:x1[i, j] + w[i, j]] = values[i, j]
  assert (expected != np.asarray(x)).sum() > 100
  np.testing.assert_array_equal(out, expected)


def _released_code_stripe_rows(rng, height=128, width=64):
  """Rows filled by one `x[i][c][y1:y1+h][x1:x1+w] = v` of the released code, with its CREP
  sampler written out from the official model.py (Python's random, literal numpy slicing)."""
  for _ in range(100):
    target_area = rng.uniform(0.02, 0.4) * height * width
    aspect = rng.uniform(0.3, 1 / 0.3)
    h, w = int(round(math.sqrt(target_area * aspect))), int(round(math.sqrt(target_area / aspect)))
    if w < width and h < height:
      x1, y1 = rng.randint(0, height - h), rng.randint(0, width - w)
      break
  plane = np.zeros((height, width))
  plane[y1:y1 + h][x1:x1 + w] = 1
  return int(plane[:, 0].sum())


def test_lfm_official_code_stripes_have_the_released_codes_statistics():
  """At the code's 128×64 map: how often the stripe is empty and how many rows it has, from an
  independent simulation of the released code (34 % empty, 16 rows on average)."""
  rng = random.Random(0)
  code_rows = np.array([_released_code_stripe_rows(rng) for _ in range(20000)])
  start, stop = lfm.official_code_stripes(jax.random.key(0), (20000,), 128, 64)
  ours = np.maximum(np.asarray(stop - start), 0)
  for statistic, tolerance in ((lambda r: np.mean(r == 0), 0.015), (np.mean, 0.4),
                               (lambda r: np.mean(r >= 30), 0.015)):
    assert abs(statistic(ours) - statistic(code_rows)) < tolerance
  assert 0.32 < np.mean(code_rows == 0) < 0.37 and 15 < code_rows.mean() < 17


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1
# (experiments/results/mutation/2026-11-27_survivors.md, where they were
# tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
def test_lfm_mask_defaults_are_the_method_defaults():
  """Calling `mask` (or the mode functions) without the box/sample arguments gives DEFAULTS."""
  for fn in (lfm.mask, lfm.local_feature_mask, lfm.official_code_mask):
    for name, parameter in inspect.signature(fn).parameters.items():
      default_name = 'official_code_samples' if name == 'num_samples' else name
      if parameter.default is not inspect.Parameter.empty and default_name in lfm.DEFAULTS:
        assert parameter.default == lfm.DEFAULTS[default_name], (fn.__name__, name)


@pytest.mark.parametrize('mode', lfm.MODES)
def test_lfm_mask_mode_selects_its_implementation(mode):
  features = jnp.ones((10, 6, 6, 4))
  key = jax.random.PRNGKey(1)
  kwargs = dict(probability=1.0, channel_fraction=0.5, fill='zero')
  expected = (lfm.official_code_mask(features, key, num_samples=3, **kwargs)
              if mode == 'official_code' else lfm.local_feature_mask(features, key, **kwargs))
  masked = lfm.mask(features, key, mode=mode, official_code_samples=3, **kwargs)
  np.testing.assert_array_equal(masked, expected)


def test_lfm_boxes_reach_every_edge_but_never_span_the_map():
  """Paper mode: top ~ U{0..H-h}, so boxes reach the last row/column; h <= H-1 and w <= W-1."""
  features = jnp.ones((64, 6, 6, 4))
  kwargs = dict(probability=1.0, channel_fraction=1.0, fill='zero')
  small = lfm.local_feature_mask(features, jax.random.PRNGKey(2), area_range=(0.02, 0.05), **kwargs)
  assert bool(jnp.any(small[:, -1] == 0)) and bool(jnp.any(small[:, :, -1] == 0))
  tall = lfm.local_feature_mask(features, jax.random.PRNGKey(3), area_range=(0.4, 0.4),
                                aspect_range=(3.3, 3.3), **kwargs)
  tall_wide = lfm.local_feature_mask(features, jax.random.PRNGKey(3), area_range=(0.4, 0.4),
                                     aspect_range=(1 / 3.3, 1 / 3.3), **kwargs)
  assert bool(jnp.all(jnp.any(tall == 1, axis=1)))  # every (b, column, c) keeps a row
  assert bool(jnp.all(jnp.any(tall_wide == 1, axis=2)))  # every (b, row, c) keeps a column


def test_official_code_stripes_stop_at_the_last_row():
  """stop = y1 + min(x1 + w, h, H - y1) <= H: the code's slice x[y1:y1+h] ends at row H."""
  start, stop = lfm.official_code_stripes(jax.random.PRNGKey(4), (4096,), 8, 8)
  assert int(jnp.max(stop)) == 8
  assert bool(jnp.all(start >= 0))


# ------------------------------------------------------------------------------- argument bounds
def test_official_code_boxes_take_an_empty_batch_a_two_row_map_and_refuse_a_negative_size():
  """batch_shape entries >= 0 (an empty batch draws nothing), maps of 2 rows or columns or more
  (a box spans at most H − 1 rows)."""
  h, w, x1, y1 = lfm.official_code_boxes(jax.random.key(0), (0, 3), 4, 4)
  assert h.shape == w.shape == x1.shape == y1.shape == (0, 3)
  h, w, _, _ = lfm.official_code_boxes(jax.random.key(0), (64,), 2, 2)
  assert set(np.asarray(h).tolist()) <= {0, 1} and set(np.asarray(w).tolist()) <= {0, 1}
  with pytest.raises(TypeError, match='ints >= 0'):
    lfm.official_code_boxes(jax.random.key(0), (-1,), 4, 4)
  with pytest.raises(ValueError, match='int >= 2'):
    lfm.official_code_boxes(jax.random.key(0), (4,), 1, 4)


def test_official_code_boxes_keep_the_first_candidate_strictly_inside_both_sides():
  """Square candidates of side round(√area) ∈ {3, 4} on 4 × 8 and 8 × 4 maps: the code keeps the
  first with h < H and w < W, always 3 × 3; a 4 × 4 candidate (56 % of them) never fits the short
  side, not even clipped to H − 1."""
  for height, width in ((4, 8), (8, 4)):
    h, w, _, _ = lfm.official_code_boxes(jax.random.key(1), (512,), height, width,
                                         area_range=(2.6**2 / 32, 4.4**2 / 32),
                                         aspect_range=(1.0, 1.0))
    assert set(zip(np.asarray(h).tolist(), np.asarray(w).tolist())) == {(3, 3)}, (height, width)


def test_official_code_boxes_clip_the_last_candidate_when_none_fits():
  """One try of side 4 on a 4 × 4 map: no candidate fits, the last is clipped to H − 1 × W − 1
  (where the code would crash), never a box spanning the map."""
  h, w, x1, y1 = lfm.official_code_boxes(jax.random.key(2), (16,), 4, 4, area_range=(0.95, 1.0),
                                         aspect_range=(1.0, 1.0), tries=1)
  assert set(np.asarray(h).tolist()) == set(np.asarray(w).tolist()) == {3}
  assert set(np.asarray(x1).tolist()) <= {0, 1} and set(np.asarray(y1).tolist()) <= {0, 1}


def test_official_code_boxes_of_a_batch_shape_are_those_of_its_flat_size():
  """batch_shape (2, 3) draws what (6,) draws, reshaped: the first fitting candidate is taken
  along the tries axis for every example, whatever the batch's rank."""
  flat = lfm.official_code_boxes(jax.random.key(3), (6,), 6, 5)
  grid = lfm.official_code_boxes(jax.random.key(3), (2, 3), 6, 5)
  for a, b in zip(flat, grid):
    np.testing.assert_array_equal(np.asarray(a).reshape(2, 3), b)
