"""Tests from the survivors of the cosmic-ray mutation run on commit 7fe75c1
(experiments/results/mutation_survivors.md): each checks behaviour that a surviving mutant changed
and no other test pinned down. Tiny arrays only."""
from __future__ import annotations

import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import objectives
from robust_jax.attacks import arguments, attack_losses, threat_model
from robust_jax.config import schema as cs
from robust_jax.config.files import load_config_file
from robust_jax.methods import class_similarity, dropattack, lfm
from tests.helpers import REPO_ROOT

_CONFIGS = os.path.join(REPO_ROOT, 'configs')


@pytest.mark.parametrize('logits_shape', [(5, 3), (4, 2, 3)])
def test_check_inputs_rejects_logits_that_are_not_batch_by_classes(logits_shape):
  """(B', C) with B' != B, or (B, ..., C) with 3 axes, must be refused, each on its own."""
  images = jnp.zeros((4, 2, 2, 1))
  labels = jnp.zeros((4,), jnp.int32)
  with pytest.raises(ValueError, match='must be logits'):
    arguments.check_inputs(lambda x: jnp.zeros(logits_shape), images, labels)


def test_success_is_untargeted_by_default():
  """Without `targeted`, success means misclassified (fab and apgd-t's restarts rely on it)."""
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
  labels = jnp.array([0, 0])
  np.testing.assert_array_equal(attack_losses.success(logits, labels), [False, True])


def test_l2_random_start_radius_is_uniform_in_the_ball():
  """Uniform in the d-ball: P(r <= t ε) = t^d, so E[r] = ε d / (d + 1) (d = 2 here)."""
  epsilon, num = 0.1, 20000
  images = jnp.full((num, 2), 0.5)  # far from the [0, 1] box: no clipping
  start = threat_model.random_start(jax.random.PRNGKey(0), images, epsilon, 'l2')
  radius = np.asarray(threat_model.distance(start, images, 'l2'))
  assert radius.max() <= epsilon * (1 + 1e-5)
  np.testing.assert_allclose(radius.mean(), epsilon * 2 / 3, rtol=0.02)


def test_l2_ascent_direction_follows_a_vanishing_gradient():
  """A gradient smaller than the guard (saturated logits) still gives an ascent direction."""
  gradient = jnp.array([[3e-14, -4e-14]])
  direction = threat_model.ascent_direction(gradient, 'l2')
  assert float(jnp.sum(direction * gradient)) > 0
  assert float(jnp.linalg.norm(direction)) <= 1.0


def test_load_similarity_rejects_negative_entries_even_when_rows_sum_to_one(tmp_path):
  path = str(tmp_path / 'similarity.npy')
  np.save(path, np.array([[0.0, 1.5, -0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]))
  with pytest.raises(cs.ConfigError, match='probability vectors'):
    class_similarity.load_similarity(path, 3)


@pytest.mark.parametrize('registry, name, config_file, section', [
    (objectives.WEIGHT_PERTURBATIONS, 'dropattack', 'dropattack.py', 'weight_perturbation'),
    (objectives.LOSSES, 'trades', 'fashion_mnist_adversarial.py:trades', 'loss'),
    (objectives.FEATURE_MASKS, 'lfm', 'lfm.py', 'feature_mask'),
])
def test_registered_method_defaults_are_the_shipped_fashion_mnist_settings(registry, name,
                                                                           config_file, section):
  """`--config.<section>.name=<name>` fills in these defaults: they must be the shipped recipe's."""
  shipped = load_config_file(os.path.join(_CONFIGS, config_file))
  assert registry.default_section('', name) == dict(getattr(shipped, section))


def test_dropattack_weight_epsilon_is_absolute_unless_asked():
  """`gradient` without `weight_epsilon_relative` uses ε_W = weight_epsilon, not ε·||W||_F."""
  params = {'w': jnp.array([3.0, -2.0, 4.0])}
  inputs = jnp.ones((2, 3))

  def loss_fn(p, x, key):
    del key
    return jnp.mean(jnp.sin(x @ p['w']))

  common = dict(attack_probability=1.0, num_steps=1, input_epsilon=0.0, attack_input=False,
                weight_paths=('w',), weight_epsilon=0.3)
  key = jax.random.PRNGKey(0)
  default = dropattack.gradient(loss_fn, params, inputs, key, **common)
  absolute = dropattack.gradient(loss_fn, params, inputs, key, weight_epsilon_relative=False,
                                 **common)
  relative = dropattack.gradient(loss_fn, params, inputs, key, weight_epsilon_relative=True,
                                 **common)
  np.testing.assert_allclose(default.loss, absolute.loss, rtol=1e-6)
  assert abs(float(default.loss) - float(relative.loss)) > 1e-3


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
