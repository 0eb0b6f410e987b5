"""APGD's choices where every formula stays right: ties, short schedules, EOT draws and keys, and
how many target classes APGD-T sweeps (fra31/auto-attack, autopgd_base.py, as the reference).

The attacks are seen through their public functions, with a `logits_fn` that records every point
(or key) at which the attack evaluates the model (`jax.debug.callback`); the EOT average is read
from `apgd._gradient_fn`, the one place it is formed.
"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import attacks, losses
from robust_jax.attacks import threat_model
from tests import helpers

apgd_module = importlib.import_module('robust_jax.attacks.apgd')  # attacks.apgd: the function

RNG = np.random.default_rng(0)
WEIGHTS = jnp.asarray(RNG.normal(size=(6, 12)), jnp.float32)  # D = 6 features, up to 12 classes
IMAGES = jnp.asarray(RNG.uniform(0.3, 0.7, (4, 6)), jnp.float32)


def linear(num_classes):
  return lambda x: x.reshape(x.shape[0], -1) @ WEIGHTS[:, :num_classes]


@pytest.mark.parametrize('num_steps,checkpoints', [(1, [1]), (2, [1, 2]), (4, [1, 2, 3, 4]),
                                                   (10, [2, 3, 4, 5, 6, 7, 8, 9, 10])])
def test_short_runs_check_after_every_step_the_reference_interval_allows(num_steps, checkpoints):
  """Intervals max(⌊0.22 N⌋, 1), each max(⌊0.03 N⌋, 1) shorter, at least max(⌊0.06 N⌋, 1): for
  N < 5 every step ends an interval of 1; N = 10 starts with 2 (steps done at each check)."""
  is_checkpoint, lengths = apgd_module.checkpoint_schedule(num_steps)
  np.testing.assert_array_equal(np.flatnonzero(is_checkpoint) + 1, checkpoints)
  np.testing.assert_array_equal(lengths[is_checkpoint], np.diff([0] + checkpoints))


def test_on_a_loss_plateau_apgd_keeps_its_start_and_halves_the_step_at_once():
  """Logits b + (x - stop_gradient(x)) W: the loss never changes while its gradient (W^T(p - e_y))
  does not vanish. The best point moves only on a strict rise (reference: `loss > loss_best`), so it
  stays x^0 and is returned; with N = 4 the first step ends a checkpoint at which no step rose
  (a tie is no rise), so η halves from 2ε to ε and the next step restarts from x^0."""
  epsilon, labels = 0.05, jnp.full(4, 4)  # class 4 predicted everywhere: never broken
  plateau = lambda x: jnp.ones((x.shape[0], 1)) * jnp.arange(5.0) + (
      x - jax.lax.stop_gradient(x)) @ WEIGHTS[:, :5]
  points = []
  result = attacks.apgd(helpers.recorded(plateau, points), IMAGES, labels, jax.random.key(3),
                        epsilon=epsilon, num_steps=4)
  x0, clean = points[0], np.asarray(IMAGES, np.float64)
  probabilities = np.asarray(jax.nn.softmax(jnp.arange(5.0)), np.float64)
  ascent = np.sign(np.asarray(WEIGHTS[:, :5], np.float64) @ (probabilities - np.eye(5)[4]))
  step = lambda x, eta: np.clip(np.clip(x + eta * ascent, clean - epsilon, clean + epsilon), 0, 1)
  np.testing.assert_allclose(result, x0, atol=1e-7)
  np.testing.assert_allclose(points[1], step(x0, 2 * epsilon), atol=1e-6)
  np.testing.assert_allclose(points[2], x0 + 0.75 * (step(x0, epsilon) - x0), atol=1e-6)


def test_eot_gradient_is_the_mean_over_its_draws_and_the_loss_the_last_draws():
  """As the reference's EOT loop: ∇ summed over `eot_samples` draws (keys split from the step's
  key) and divided by their number; the loss and success come from the last draw."""
  labels = jnp.array([0, 1, 2, 3])
  noisy = lambda x, key: (x * (1 + jax.random.normal(key, x.shape[1:]))) @ WEIGHTS[:, :4]
  loss_fn = lambda logits: losses.cross_entropy(logits, labels)
  evaluate = apgd_module._gradient_fn(noisy, loss_fn, lambda logits: jnp.argmax(logits, -1),
                                      eot_samples=3)
  key = jax.random.key(5)
  loss, grad, predicted = evaluate(IMAGES, key)
  keys = jax.random.split(key, 3)
  draws = [jax.grad(lambda x, k=k: loss_fn(noisy(x, k)).sum())(IMAGES) for k in keys]
  np.testing.assert_allclose(grad, sum(draws) / 3, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(loss, loss_fn(noisy(IMAGES, keys[2])), rtol=1e-6)
  np.testing.assert_array_equal(predicted, jnp.argmax(noisy(IMAGES, keys[2]), -1))
  assert not np.allclose(draws[0], draws[1], rtol=1e-3)  # the draws differ: the mean is a choice


def test_every_model_evaluation_of_every_restart_draws_a_fresh_key():
  """With EOT (one sample), x^0 and the N steps of each of 2 restarts evaluate the model with
  2 (N + 1) distinct keys: none reused across steps or restarts."""
  keys = []

  def noisy(x, key):
    jax.debug.callback(lambda k: keys.append(tuple(np.asarray(k).ravel())),
                       jax.random.key_data(key), ordered=True)
    return (x * (1 + 0.1 * jax.random.normal(key, x.shape[1:]))) @ WEIGHTS[:, :4]

  attacks.apgd(noisy, IMAGES, jnp.array([0, 1, 2, 3]), jax.random.key(0), epsilon=0.05,
               num_steps=3, restarts=2, eot_samples=1)
  assert len(keys) == 2 * (3 + 1)
  assert len(set(keys)) == len(keys)


def _evaluations(num_classes, **kwargs):
  """How many times APGD-T (1 step, 1 restart) evaluates a C-class linear model: 1 + 2 per target
  class swept (x^0 and x^1), plus 1 for the clean ranking unless target_labels are given."""
  points = []
  labels = jnp.argmax(linear(num_classes)(IMAGES), -1)
  result = attacks.apgd_targeted(helpers.recorded(linear(num_classes), points), IMAGES, labels,
                                 jax.random.key(1), epsilon=0.02, num_steps=1, **kwargs)
  return len(points), result


def test_apgd_targeted_sweeps_nine_classes_by_default_and_one_given_target_labels():
  assert _evaluations(12)[0] == 1 + 2 * 9  # min(9, C - 1) at C = 12: 9, not 10 or 11
  assert _evaluations(5)[0] == 1 + 2 * 4  # C - 1 wrong classes at C = 5
  assert _evaluations(4, num_target_classes=3)[0] == 1 + 2 * 3  # C = 4 is enough
  order = np.argsort(np.asarray(linear(12)(IMAGES)), -1)
  count, by_labels = _evaluations(12, target_labels=jnp.asarray(order[:, -2]))
  assert count == 2  # one sweep, no ranking
  _, by_rank = _evaluations(12, target_class_rank=2)  # the same targets and key: the same run
  np.testing.assert_array_equal(by_labels, by_rank)


def test_apgd_targeted_refuses_three_classes():
  with pytest.raises(ValueError, match=r'^logits_fn gives C = 3: the targeted DLR loss'):
    _evaluations(3)


def test_sphere_start_stays_in_the_unit_box():
  """x + ε u / ||u|| is clipped to [0, 1]: images at 1 cannot start above it (L2 and L∞)."""
  for norm in threat_model.NORMS:
    start = apgd_module.start_point(jax.random.key(2), jnp.ones((4, 6)), 0.5, norm)
    assert float(start.max()) <= 1.0 and float(start.min()) >= 0.5 - 1e-6
