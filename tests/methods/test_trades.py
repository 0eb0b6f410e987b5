"""TRADES (robust_jax/methods/trades.py): its config cross-checks and the range of β (its KL
direction is pinned in tests/attacks/test_attack_schedules.py, its step in
tests/test_step_reference.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax.config import validation
from robust_jax.config.schema import ConfigError
from robust_jax.methods import trades


def test_trades_with_an_adversary_is_a_config_error():
  from configs import fashion_mnist_adversarial
  config = fashion_mnist_adversarial.get_config('trades')
  config.adversary = fashion_mnist_adversarial.get_config('pgd').adversary
  with pytest.raises(ConfigError, match='TRADES makes its own adversarial examples'):
    validation.validate_config(config)


def test_trades_loss_takes_any_beta_from_0_and_is_the_natural_loss_at_0():
  """β ∈ [0, ∞): β = 0 is cross-entropy alone; β = 0.5 weighs the robust term by one half."""
  weights = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  def apply_fn(params, images):
    return images.reshape(images.shape[0], -1) @ params
  images = jnp.asarray(np.random.default_rng(1).uniform(size=(5, 2, 2, 1)), jnp.float32)
  labels = jnp.array([0, 1, 2, 0, 1])
  common = dict(epsilon=0.1, step_size=0.05, num_steps=2)
  at = {beta: float(trades.loss(apply_fn, weights, images, labels, jax.random.key(0), beta=beta,
                                **common)) for beta in (0.0, 0.5, 1.0)}
  natural = float(jnp.mean(-jax.nn.log_softmax(apply_fn(weights, images))[jnp.arange(5), labels]))
  assert at[0.0] == pytest.approx(natural, rel=1e-6)
  assert at[1.0] > at[0.0] and at[0.5] == pytest.approx((at[0.0] + at[1.0]) / 2, rel=1e-6)
