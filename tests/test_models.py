"""Each model's output shape for each dataset, and the dropout / feature-hook mechanics."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import config_defaults, data
from robust_jax.models import MODELS, build_model

MODEL_SECTIONS = {
    'mlp': dict(name='mlp', dropout_rate=0.0, dropout_sites=(), hidden_sizes=(32,)),
    'cnn': config_defaults.cnn_model(),
    'vgg16': config_defaults.plain_model('vgg16'),
    'preact_resnet18': config_defaults.plain_model('preact_resnet18'),
    'wrn28_10': config_defaults.plain_model('wrn28_10'),
    'wrn34_10': config_defaults.plain_model('wrn34_10'),
}


def test_every_registered_model_is_covered():
  assert sorted(MODEL_SECTIONS) == MODELS.names()


@pytest.mark.parametrize('dataset', sorted(data.SPECS))
@pytest.mark.parametrize('model_name', sorted(MODEL_SECTIONS))
def test_output_shape(model_name, dataset):
  import ml_collections
  spec = data.SPECS[dataset]
  model = build_model(ml_collections.ConfigDict(MODEL_SECTIONS[model_name]), spec)
  images = jax.ShapeDtypeStruct((2, *spec.image_shape), jnp.float32)
  params, state = jax.eval_shape(lambda: model.init(jax.random.key(0), spec.image_shape))
  for train in (False, True):
    logits, _ = jax.eval_shape(
        lambda p, s, x, train=train: model.apply(p, s, x, train=train, key=jax.random.key(1)),
        params, state, images)
    chex.assert_shape(logits, (2, spec.num_classes))
  assert ('batch_stats' in state) == (model_name not in ('mlp', 'cnn'))


def _cnn(**overrides):
  import ml_collections
  section = ml_collections.ConfigDict(config_defaults.cnn_model(widths=(4, 8), hidden_size=16,
                                                                **overrides))
  return section


def test_dropout_only_in_training_and_per_example_keys():
  spec = data.SPECS['fashion_mnist']
  model = build_model(_cnn(dropout_rate=0.5, dropout_sites=('classifier',)), spec)
  params, state = model.init(jax.random.key(0), spec.image_shape)
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  eval_a, _ = model.apply(params, state, x, train=False)
  eval_b, _ = model.apply(params, state, x, train=False)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a, _ = model.apply(params, state, x, train=True, key=jax.random.key(2))
  train_b, _ = model.apply(params, state, x, train=True, key=jax.random.key(3))
  assert not np.allclose(train_a, train_b)
  # Example 0's mask depends only on (key, index 0): the same with a batch of one.
  train_first, _ = model.apply(params, state, x[:1], train=True, key=jax.random.key(2))
  np.testing.assert_allclose(train_first, train_a[:1], rtol=1e-5, atol=1e-6)


def test_feature_hook_runs_at_its_site_in_training_only():
  spec = data.SPECS['fashion_mnist']
  seen = []

  def record(features, key):
    del key
    seen.append(features.shape)
    return jnp.zeros_like(features)

  model = build_model(_cnn(), spec, feature_transforms=(('conv2', record),))
  params, state = model.init(jax.random.key(0), spec.image_shape)
  seen.clear()
  x = jnp.ones((3, 28, 28, 1))
  model.apply(params, state, x, train=False)
  assert not seen
  model.apply(params, state, x, train=True, key=jax.random.key(0))
  assert seen == [(3, 14, 14, 8)]
