"""Learning-rate schedules (`training.optim.make_schedule`) pinned at their milestones (issue #28):
the step before, at and after every piecewise boundary (boundaries_epochs × steps_per_epoch,
rounded), the warm-up's end, the cosine's end and the one-cycle's peak and end, against values
computed by hand, so that a decay one step (or one epoch) late fails. The value at step s is the
learning rate of update s + 1 (optax's count of updates done; `test_the_optimizer_applies_...`).

References: 'piecewise' = PyTorch's MultiStepLR stepped once per epoch (lr × decay_factor from
the first step of each boundary epoch: the CIFAR recipe, 0.1 → 0.01 at epoch 100 → 0.001 at 150);
warm-up = linear from 0 to lr over round(warmup_epochs × steps_per_epoch) steps; 'cosine' = lr ·
(1 + cos(π t / T)) / 2 over the T steps after the warm-up, 0 at the run's end; 'onecycle' =
optax's cosine one-cycle (lr / 25 at step 0, lr at int(0.3 T), lr / 25 / 1e4 at T).
"""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax.config import defaults as config_defaults
from robust_jax.training import optim


def _optimizer_section(**overrides):
  section = ml_collections.ConfigDict(config_defaults.default_config().optimizer.to_dict())
  section.update(name='sgd', learning_rate=0.1, momentum=0.0, weight_decay=0.0,
                 schedule='constant', warmup_epochs=0.0, boundaries_epochs=(), decay_factor=0.1)
  section.update(overrides)
  return section


def _assert_schedule(section, steps_per_epoch, total_steps, expected):
  """`expected`: {step: learning rate}; checked for the plain and the jitted schedule."""
  schedule = optim.make_schedule(section, steps_per_epoch, total_steps)
  steps = sorted(expected)
  values = [float(schedule(s)) for s in steps]
  jitted = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)))
  want = [expected[s] for s in steps]
  np.testing.assert_allclose(values, want, rtol=1e-5, atol=2e-7, err_msg=f'steps {steps}')
  np.testing.assert_allclose(jitted, want, rtol=1e-5, atol=2e-7, err_msg=f'steps {steps}')


def test_piecewise_decays_at_the_first_step_of_each_boundary():
  """Boundaries 1 and 2.5 epochs of 10 steps: steps 10 and 25."""
  section = _optimizer_section(schedule='piecewise', boundaries_epochs=(1.0, 2.5))
  _assert_schedule(section, 10, 40, {0: 0.1, 9: 0.1, 10: 0.01, 11: 0.01, 24: 0.01, 25: 0.001,
                                     26: 0.001, 39: 0.001, 40: 0.001})


def test_piecewise_boundaries_round_to_the_nearest_step():
  """1.26 and 2.74 epochs of 10 steps: steps 13 (not 12) and 27 (not 28)."""
  section = _optimizer_section(schedule='piecewise', boundaries_epochs=(1.26, 2.74),
                               decay_factor=0.5)
  _assert_schedule(section, 10, 40, {12: 0.1, 13: 0.05, 14: 0.05, 26: 0.05, 27: 0.025,
                                     28: 0.025})


def test_the_cifar_recipe_decays_at_epochs_100_and_150():
  """cifar_config: SGD 0.1, ×0.1 at epochs 100 and 150 of 200; 50,000 // 128 = 390 steps per epoch,
  so steps 39,000 and 58,500 (MultiStepLR's epochs 100 and 150)."""
  section = config_defaults.cifar_config('cifar10', 'preact_resnet18').optimizer
  assert section.schedule == 'piecewise' and tuple(section.boundaries_epochs) == (100.0, 150.0)
  _assert_schedule(section, 390, 78000, {0: 0.1, 38999: 0.1, 39000: 0.01, 39001: 0.01,
                                         58499: 0.01, 58500: 0.001, 58501: 0.001, 77999: 0.001})


def test_constant_warm_up_rises_linearly_from_zero_and_ends_at_its_rounded_step():
  """2 epochs of 5 steps: lr · t / 10 for t < 10, then lr; 0.76 epochs of 10 steps: 8 steps."""
  section = _optimizer_section(warmup_epochs=2.0)
  _assert_schedule(section, 5, 50, {0: 0.0, 1: 0.01, 5: 0.05, 9: 0.09, 10: 0.1, 11: 0.1,
                                    49: 0.1})
  section = _optimizer_section(warmup_epochs=0.76)
  _assert_schedule(section, 10, 50, {6: 0.075, 7: 0.0875, 8: 0.1, 9: 0.1})


def _cosine(lr, t, length):
  return lr * (1 + math.cos(math.pi * min(t, length) / length)) / 2


def test_cosine_reaches_zero_exactly_at_the_end_of_the_run():
  """No warm-up, 20 steps: lr (1 + cos(π t / 20)) / 2; half at step 10, 0 from step 20."""
  section = _optimizer_section(schedule='cosine')
  expected = {t: _cosine(0.1, t, 20) for t in (0, 1, 10, 19, 20, 21)}
  assert expected[10] == pytest.approx(0.05) and expected[20] == 0.0 and expected[19] > 5e-4
  _assert_schedule(section, 4, 20, expected)


def test_cosine_after_a_warm_up_spans_the_remaining_steps():
  """1 epoch of 4 steps of warm-up in a 20-step run: 0.1 · t / 4 up to step 3, then the cosine
  over the 16 steps left, from 0.1 at step 4 to 0 at step 20."""
  section = _optimizer_section(schedule='cosine', warmup_epochs=1.0)
  expected = {0: 0.0, 3: 0.075, **{t: _cosine(0.1, t - 4, 16) for t in (4, 5, 12, 19, 20, 24)}}
  assert expected[4] == 0.1 and expected[12] == pytest.approx(0.05) and expected[20] == 0.0
  _assert_schedule(section, 4, 20, expected)


def _cosine_between(first, last, fraction):
  """Cosine interpolation from `first` (fraction 0) to `last` (fraction 1)."""
  return last + (first - last) * (1 + math.cos(math.pi * fraction)) / 2


def test_onecycle_peaks_at_thirty_percent_and_ends_at_the_last_step():
  """100 steps: lr / 25 at 0, cosine up to lr at step 30, cosine down to lr / 25 / 1e4 at 100."""
  lr, start, end = 0.1, 0.1 / 25, 0.1 / 25 / 1e4
  rise = lambda t: _cosine_between(start, lr, t / 30)
  fall = lambda t: _cosine_between(lr, end, (t - 30) / 70)
  expected = {0: start, 15: rise(15), 29: rise(29), 30: lr, 31: fall(31), 65: fall(65),
              99: fall(99), 100: end, 101: end}
  assert expected[15] == pytest.approx((start + lr) / 2) and expected[29] < lr > expected[31]
  _assert_schedule(_optimizer_section(schedule='onecycle'), 10, 100, expected)


def test_the_optimizer_applies_the_schedule_of_step_s_at_update_s():
  """Plain SGD on a loss of gradient 1: update s moves the parameter by −lr(s), so with a boundary
  at 1 epoch of 3 steps updates 0..2 use 0.1 and updates 3..5 use 0.01."""
  section = _optimizer_section(schedule='piecewise', boundaries_epochs=(1.0,))
  optimizer, _ = optim.make_optimizer(section, 3, 6)
  params = {'w': jnp.zeros(())}
  state = optimizer.init(params)
  moves = []
  for _ in range(6):
    updates, state = optimizer.update({'w': jnp.ones(())}, state, params)
    moves.append(-float(updates['w']))
  np.testing.assert_allclose(moves, [0.1, 0.1, 0.1, 0.01, 0.01, 0.01], rtol=1e-6)
