"""MDL (robust_jax/methods/mdl.py) against numpy on a tiny CNN with dropout: the mean dropout
cross-entropy, the orthogonality term, its config error and its defaults."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from robust_jax import objectives
from robust_jax.config import defaults as config_defaults, validation
from robust_jax.config.schema import ConfigError
from robust_jax.methods import mdl


def _mdl(model, weight, k=3):
  section = ml_collections.ConfigDict(dict(name='mdl', num_subnetworks=k,
                                           orthogonality_weight=weight))
  return mdl.mdl_loss(section, model, lambda labels: jax.nn.one_hot(labels, 10))


def test_mdl_with_zero_weight_is_mean_dropout_cross_entropy(tiny_model):
  model, params, state, batch = tiny_model
  key = jax.random.key(3)
  value, _ = _mdl(model, 0.0)(params, state, batch, key)
  per_mask = [jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      model.apply(params, state, batch['image'], train=True, key=k)[0], batch['label']))
              for k in jax.random.split(key, 3)]
  np.testing.assert_allclose(value, np.mean(per_mask), rtol=1e-5)


def test_mdl_orthogonality_term_matches_numpy(tiny_model):
  model, params, state, batch = tiny_model
  key = jax.random.key(3)
  with_weight, aux = _mdl(model, 2.0)(params, state, batch, key)
  without, _ = _mdl(model, 0.0)(params, state, batch, key)
  logits = np.stack([np.asarray(model.apply(params, state, batch['image'], train=True, key=k)[0])
                     for k in jax.random.split(key, 3)])
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  labels = np.asarray(batch['label'])
  total = 0.0
  for b in range(6):
    masked = probs[:, b].copy()
    masked[:, labels[b]] = 0
    cosines = [masked[i] @ masked[j] / (np.linalg.norm(masked[i]) * np.linalg.norm(masked[j]))
               for i in range(3) for j in range(i + 1, 3)]
    total += np.mean(cosines)
  np.testing.assert_allclose(aux.metrics['orthogonality'], total / 6, rtol=1e-5)
  np.testing.assert_allclose(with_weight - without, 2.0 * total / 6, rtol=1e-4)


@pytest.mark.parametrize('rate, sites', [(0.0, ()), (0.0, ('classifier',)), (0.5, ())])
def test_mdl_without_dropout_is_a_config_error(rate, sites):
  config = config_defaults.default_config()
  config.loss = dict(name='mdl', num_subnetworks=2, orthogonality_weight=1.0)
  config.model.update(dropout_rate=rate, dropout_sites=sites)
  with pytest.raises(ConfigError, match='MDL needs dropout'):
    validation.validate_config(config)


def test_mdl_orthogonality_is_per_example_and_terms_take_soft_targets():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 5, 4)).astype(np.float32)  # K = 3, B = 5, C = 4
  labels = np.array([0, 1, 2, 3, 0])
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  expected = []
  for b in range(5):
    masked = probs[:, b].copy()
    masked[:, labels[b]] = 0
    unit = masked / np.linalg.norm(masked, axis=-1, keepdims=True)
    expected.append(np.mean([unit[i] @ unit[j] for i in range(3) for j in range(i + 1, 3)]))
  np.testing.assert_allclose(mdl.orthogonality(jnp.asarray(probs), labels), expected, rtol=1e-5)
  targets = 0.8 * np.eye(4)[labels] + 0.05
  cross_entropy, ortho = mdl.terms(jnp.asarray(logits), labels, jnp.asarray(targets))
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  np.testing.assert_allclose(cross_entropy, -np.mean(np.sum(targets * log_probs, -1)), rtol=1e-5)
  np.testing.assert_allclose(ortho, np.mean(expected), rtol=1e-5)
  for bad in (logits[:1], logits[0]):
    with pytest.raises(ValueError, match=r'logits_k.shape=.*must be \(K, B, C\)'):
      mdl.terms(jnp.asarray(bad), labels)


def test_mdl_logs_the_first_subnetworks_logits_and_defaults_to_the_papers_reading(tiny_model):
  model, params, state, batch = tiny_model
  key = jax.random.key(5)
  _, aux = _mdl(model, 1.0)(params, state, batch, key)
  first = model.apply(params, state, batch['image'], train=True, key=jax.random.split(key, 3)[0])
  np.testing.assert_allclose(aux.logits, first[0], rtol=1e-6)
  assert objectives.LOSSES.default_section('', 'mdl') == dict(
      name='mdl', num_subnetworks=2, orthogonality_weight=1.0)


def test_orthogonality_stays_finite_when_a_masked_norm_equals_the_guard():
  """O_b's denominator adds 1e-12 to each masked norm (the docstring's formula): a sub-network
  whose only mass off the true class is 1e-12 gives the unit vector halved, not 0 / 0."""
  probs = jnp.array([[[1.0, 1e-12, 0.0]], [[0.0, 0.6, 0.4]]], jnp.float32)  # K = 2, B = 1, C = 3
  value = float(mdl.orthogonality(probs, jnp.array([0]))[0])
  assert value == pytest.approx(0.5 * 0.6 / np.hypot(0.6, 0.4), rel=1e-5)
