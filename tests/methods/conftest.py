"""Fixtures shared by the method tests (tests/methods/test_<method>.py)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import data
from robust_jax.config import defaults as config_defaults
from robust_jax.models import build_model


@pytest.fixture(scope='module')
def tiny_model():
  spec = data.SPECS['fashion_mnist']
  section = ml_collections.ConfigDict(config_defaults.cnn_model(
      widths=(2, 3), kernel_size=3, hidden_size=8, dropout_rate=0.5, dropout_sites=('classifier',)))
  model = build_model(section, spec)
  params, state = model.init(jax.random.key(0), spec.image_shape)
  rng = np.random.default_rng(0)
  batch = {'image': jnp.asarray(rng.uniform(size=(6, 28, 28, 1)), jnp.float32),
           'label': jnp.asarray(rng.integers(0, 10, 6), jnp.int32)}
  return model, params, state, batch
