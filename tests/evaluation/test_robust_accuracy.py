"""Robust accuracy during training (`evaluation.robust_accuracy`): exact counts with padding on
eight devices, hand-computed on models whose answer no attack can change, and no higher than the
clean accuracy of a model an attack can fool."""
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import sharding
from robust_jax.data.arrays import Split
from robust_jax.data.pipeline import make_eval_batches
from robust_jax.evaluation import clean_accuracy, robust_accuracy


def _robustness(epsilons=('0', '0.1')):
  return ml_collections.ConfigDict(dict(norm='linf', epsilons=epsilons, pgd_steps=5,
                                        pgd_relative_step_size=0.5, pgd_restarts=1,
                                        model_mode='eval'))


def _linear_model(weights, bias):
  """logits = mean pixel (in [0, 1]) × weights + bias: (B, 4, 4, 1) -> (B, C); `apply` as
  `models.ModelFns.apply`."""
  apply = lambda params, state, x, train=False, key=None: (
      jnp.mean(x, axis=(1, 2, 3))[:, None] * params['w'] + params['b'], state)
  return types.SimpleNamespace(apply=apply), {'w': jnp.asarray(weights, jnp.float32),
                                                          'b': jnp.asarray(bias, jnp.float32)}


def _batches(labels, mesh, pixels=None, batch_size=8):
  labels = np.asarray(labels, np.int32)
  images = (np.full((len(labels), 4, 4, 1), 128, np.uint8) if pixels is None
            else np.asarray(pixels, np.uint8).reshape(-1, 1, 1, 1).repeat(4, 1).repeat(4, 2))
  return make_eval_batches(Split(images, labels), batch_size, mesh)


def test_the_largest_epsilon_is_the_one_checked():
  assert robust_accuracy.training_epsilon(_robustness(('0', '8/255', '0.01'))) == '8/255'


def test_a_constant_model_has_its_label_frequency_as_robust_accuracy_with_padding(eight_devices):
  """Logits that ignore the input: robust = clean = the share of labels equal to argmax(b), with
  13 examples in batches of 8 on 8 devices (3 padding rows the mask must drop)."""
  mesh = sharding.make_mesh(eight_devices)
  model, params = _linear_model([0.0, 0.0, 0.0], [0.0, 2.0, 1.0])
  labels = [1, 1, 1, 1, 1, 0, 2, 2, 1, 0, 0, 2, 1]  # 7 of 13 are class 1
  batches = _batches(labels, mesh)
  fn = robust_accuracy.make_robust_eval_fn(model, mesh, _robustness())
  result = fn(params, {}, batches, jax.random.key(0))
  assert float(result['robust_accuracy']) == pytest.approx(7 / 13, abs=1e-7)
  clean = clean_accuracy.make_clean_eval_fn(model, mesh)(params, {}, batches)
  assert float(clean['accuracy']) == pytest.approx(7 / 13, abs=1e-7)


def test_pgd_breaks_exactly_the_examples_within_epsilon_of_the_boundary():
  """Two classes, logits (0, 2m - 1) for mean pixel m: class 1 iff m > 1/2. With ε = 0.1 (L∞,
  which moves the mean by ε), an example is robust iff |m - 1/2| > 0.1, counted by hand."""
  mesh = sharding.make_mesh(jax.devices()[:1])
  model, params = _linear_model([0.0, 2.0], [0.0, -1.0])
  pixels = [0, 64, 110, 120, 140, 150, 200, 255, 115, 130]
  means = np.asarray(pixels) / 255
  labels = (means > 0.5).astype(int)
  robust_by_hand = np.abs(means - 0.5) > 0.1 + 1e-6
  batches = _batches(labels, mesh, pixels=pixels, batch_size=4)
  fn = robust_accuracy.make_robust_eval_fn(model, mesh, _robustness())
  result = float(fn(params, {}, batches, jax.random.key(1))['robust_accuracy'])
  assert result == pytest.approx(robust_by_hand.mean(), abs=1e-7) and robust_by_hand.mean() < 1
