"""Accuracy accounting with padded batches (issue #28): 13 examples in batches of 8 on 8 simulated
devices leave 3 padding rows (zero images, label 0) that a model classifies "correctly"; the clean
accuracy and loss (`clean_accuracy`), the robust accuracy during training (`robust_accuracy`) and
the robustness evaluation (`robustness.evaluate`) must count exactly the 13 real examples, as on
one device.

The model's answers are fixed by hand: logits (0, 2m − 1, −10) for the mean pixel m in [0, 1], so
class 1 iff m > 1/2, and an L∞ attack of radius ε moves m by at most ε: an example is robust at ε
iff it is correct and |m − 1/2| > ε (FGSM reaches the boundary exactly, as in
test_robust_accuracy.py).
"""
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import sharding
from robust_jax.config import defaults as config_defaults
from robust_jax.data.arrays import Split
from robust_jax.data.pipeline import make_eval_batches
from robust_jax.evaluation import clean_accuracy, robust_accuracy, robustness

# 13 real examples; padding rows are pixel 0 (m = 0, predicted class 0) with label 0.
PIXELS = np.array([0, 20, 40, 200, 230, 255, 140, 150, 110, 100, 60, 180, 240])
LABELS = np.array([0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 2])
MEANS = PIXELS / 255
CORRECT = (MEANS > 0.5).astype(int) == LABELS  # 9 of 13
EPSILON = 0.1
ROBUST = CORRECT & (np.abs(MEANS - 0.5) > EPSILON)  # 7 of 13: 140 and 110 are within ε


def _model():
  """`models.ModelFns`-like: apply(params, state, x, train, key) -> (logits, state)."""
  def apply(params, state, x, train=False, key=None):
    del train, key
    m = jnp.mean(x, axis=(1, 2, 3))
    return jnp.stack([jnp.zeros_like(m), params['scale'] * (2 * m - 1),
                      jnp.full_like(m, -10.0)], -1), state
  return types.SimpleNamespace(apply=apply, module=types.SimpleNamespace(num_classes=3)), {
      'scale': jnp.ones(())}


def _split(num=len(PIXELS)):
  images = PIXELS[:num].astype(np.uint8).reshape(-1, 1, 1, 1).repeat(2, 1).repeat(2, 2)
  return Split(images, LABELS[:num].astype(np.int32))


def _expected_loss():
  logits = np.stack([np.zeros_like(MEANS), 2 * MEANS - 1, np.full_like(MEANS, -10.0)], -1)
  log_sum = np.log(np.exp(logits).sum(-1))
  return np.mean(log_sum - logits[np.arange(len(LABELS)), LABELS])


def test_the_hand_computed_case_distinguishes_padding():
  assert CORRECT.sum() == 9 and ROBUST.sum() == 7
  model, params = _model()
  padding_logits, _ = model.apply(params, {}, jnp.zeros((1, 2, 2, 1)))
  assert int(jnp.argmax(padding_logits)) == 0  # a padding row (label 0) would count as correct


def test_clean_and_training_robust_accuracy_count_only_real_examples(eight_devices):
  model, params = _model()
  robustness_config = ml_collections.ConfigDict(dict(
      norm='linf', epsilons=('0', str(EPSILON)), pgd_steps=3, pgd_relative_step_size=0.5,
      pgd_restarts=1, model_mode='eval'))
  results = []
  for devices in (eight_devices[:1], eight_devices):
    mesh = sharding.make_mesh(devices)
    batches = make_eval_batches(_split(), 8, mesh)
    assert batches['mask'].shape == (2, 8) and float(batches['mask'].sum()) == 13
    clean = clean_accuracy.make_clean_eval_fn(model, mesh)(params, {}, batches)
    robust = robust_accuracy.make_robust_eval_fn(model, mesh, robustness_config)(
        params, {}, batches, jax.random.key(0))
    results.append((float(clean['accuracy']), float(clean['loss']),
                    float(robust['robust_accuracy'])))
  for accuracy, loss, robust in results:
    assert accuracy == pytest.approx(9 / 13, abs=1e-7)
    assert loss == pytest.approx(_expected_loss(), rel=1e-5)
    assert robust == pytest.approx(7 / 13, abs=1e-7)
  assert results[0] == pytest.approx(results[1], abs=1e-6)


def _evaluate(devices, num_examples=0):
  settings = config_defaults.default_config().robustness
  settings.update(epsilons=('0', str(EPSILON)), attacks=('fgsm', 'pgd'), pgd_steps=3,
                  pgd_relative_step_size=0.5, batch_size=8, num_examples=num_examples,
                  large_epsilon=str(EPSILON))
  model, params = _model()
  return robustness.evaluate(model, params, {}, _split(), settings, sharding.make_mesh(devices))


def test_robustness_evaluation_counts_only_real_examples_on_one_and_eight_devices(eight_devices):
  """13 examples, batch 8: two batches of 8 (3 padding rows) on 8 devices, of 7 (1) on one; every
  column counts the 13 real examples, equally on both."""
  on_one, on_eight = _evaluate(eight_devices[:1]), _evaluate(eight_devices)
  assert on_eight['batch_size'] == 8 and on_one['batch_size'] == 7
  for results in (on_one, on_eight):
    assert results['num_examples'] == 13
    assert results['accuracy']['0'] == pytest.approx(
        {'clean': 9 / 13, 'FGSM': 9 / 13, 'PGD-3': 9 / 13, robustness.WORST_CASE: 9 / 13})
    row = results['accuracy'][str(EPSILON)]
    assert row['clean'] == pytest.approx(9 / 13)
    assert row['FGSM'] == row['PGD-3'] == row[robustness.WORST_CASE] == pytest.approx(7 / 13)
  assert on_one['accuracy'] == on_eight['accuracy']
  # the large-ε check runs on the first batch's real examples: 7 on one device, 8 on eight
  for results, first in ((on_one, 7), (on_eight, 8)):
    assert results['large_epsilon_examples'] == first
    assert results['large_epsilon_accuracy'] == pytest.approx(ROBUST[:first].mean())


def test_robustness_evaluation_of_fewer_examples_than_devices_drops_the_padding(eight_devices):
  """5 examples on 8 devices: one batch of 8 with 3 padding rows, also in the large-ε check."""
  results = _evaluate(eight_devices, num_examples=5)
  assert results['num_examples'] == 5 and results['batch_size'] == 8
  assert results['accuracy']['0']['clean'] == pytest.approx(CORRECT[:5].mean())
  assert results['accuracy'][str(EPSILON)][robustness.WORST_CASE] == pytest.approx(
      ROBUST[:5].mean())
  assert results['large_epsilon_examples'] == 5
  assert results['large_epsilon_accuracy'] == pytest.approx(ROBUST[:5].mean())
