"""TRADES (robust_jax/methods/trades.py): its config cross-checks (its KL direction is pinned in
tests/attacks/test_attack_schedules.py, its step in tests/test_step_reference.py)."""
import pytest

from robust_jax.config import validation
from robust_jax.config.schema import ConfigError


def test_trades_with_an_adversary_is_a_config_error():
  from configs import fashion_mnist_adversarial
  config = fashion_mnist_adversarial.get_config('trades')
  config.adversary = fashion_mnist_adversarial.get_config('pgd').adversary
  with pytest.raises(ConfigError, match='TRADES makes its own adversarial examples'):
    validation.validate_config(config)
