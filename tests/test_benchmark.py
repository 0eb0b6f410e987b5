"""The benchmark times both steps and reports the paired ratio (tests/test_step_reference.py checks
that the hand-written steps compute what the library computes)."""
import numpy as np
import pytest

from experiments import benchmark
from robust_jax.runs import load_config_file


def _tiny(spec):
  config = load_config_file(spec)
  config.model.update(widths=(4, 8), hidden_size=16)
  config.train.batch_size = 16
  return config


def test_benchmark_reports_both_steps(eight_devices):
  del eight_devices
  result = benchmark.benchmark(_tiny('configs/erm.py:fashion_mnist'), rounds=2, steps=1)
  general, hand = result['robust_jax_round_s'], result['hand_written_round_s']
  assert len(general) == len(hand) == 2 and min(general + hand) > 0
  assert result['robust_jax_step_s'] == pytest.approx(np.median(general))
  assert result['ratio_time_general_over_hand'] == pytest.approx(
      np.median(np.array(general) / np.array(hand)))  # paired per round, not median / median
