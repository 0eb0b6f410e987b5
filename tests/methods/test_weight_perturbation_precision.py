"""bfloat16 would erase AMP's and DropAttack's weight perturbations, so the combination is refused
(`objectives.require_float32_weights`)."""
import jax
import jax.numpy as jnp
import pytest

from robust_jax.config import overrides as config_overrides, validation
from robust_jax.config.files import load_config_file
from robust_jax.config.schema import ConfigError


def _as_bfloat16(x):
  return x.astype(jnp.bfloat16).astype(jnp.float32)


def test_bfloat16_rounds_a_weight_perturbation_away():
  """A 640→640 3×3 convolution (VGG-16's widest) with PyTorch's default initialisation, bound
  1/sqrt(fan_in), and a perturbation of norm 0.1 (AMP's ε for VGG-16): what a bfloat16
  convolution sees of Δ is far from Δ."""
  weight_key, direction_key = jax.random.split(jax.random.key(0))
  shape = (3, 3, 640, 640)
  theta = jax.random.uniform(weight_key, shape, minval=-1, maxval=1) / jnp.sqrt(3 * 3 * 640)
  direction = jax.random.normal(direction_key, shape)
  delta = 0.1 * direction / jnp.linalg.norm(direction)
  seen = _as_bfloat16(theta + delta) - _as_bfloat16(theta)
  cosine = jnp.vdot(seen, delta) / (jnp.linalg.norm(seen) * jnp.linalg.norm(delta))
  unchanged = jnp.mean(_as_bfloat16(theta + delta) == _as_bfloat16(theta))
  assert float(cosine) == pytest.approx(0.948, abs=0.005) and float(cosine) < 0.99
  assert float(unchanged) == pytest.approx(0.26, abs=0.01)
  seen_in_float32 = (theta + delta) - theta
  assert float(jnp.vdot(seen_in_float32, delta) / jnp.vdot(delta, delta)) == pytest.approx(
      1.0, abs=1e-3)


@pytest.mark.parametrize('spec, what', [
    ('configs/amp.py:fashion_mnist', "AMP (config.weight_perturbation.name='amp')"),
    ('configs/amp.py:cifar10_vgg16', "AMP (config.weight_perturbation.name='amp')"),
    ('configs/dropattack.py:fashion_mnist', 'DropAttack with attack_weights=True'),
    ('configs/text.py:offline_ag_news_gru_dropattack',
     "DropAttack on the embedding table ('dropattack_embedding')"),
])
def test_weight_perturbations_in_bfloat16_are_refused_in_one_line(spec, what):
  config = config_overrides.apply_overrides(load_config_file(spec),
                                            ['train.compute_dtype=bfloat16'])
  with pytest.raises(ConfigError) as error:
    validation.validate_config(config)
  assert str(error.value) == (
      f"config.train.compute_dtype='bfloat16': {what} perturbs the weights by less than "
      "bfloat16's resolution of them (8 significant bits), so the computation would not see the "
      "perturbation; use compute_dtype 'float32'")


def test_input_only_dropattack_and_pgd_stay_allowed_in_bfloat16():
  for spec, overrides in (('configs/dropattack.py:fashion_mnist',
                           ['weight_perturbation.attack_weights=false']),
                          ('configs/fashion_mnist_adversarial.py:pgd', [])):
    config = config_overrides.apply_overrides(load_config_file(spec),
                                              ['train.compute_dtype=bfloat16', *overrides])
    validation.validate_config(config)
