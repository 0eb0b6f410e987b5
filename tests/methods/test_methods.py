"""Each method against a hand computation on a tiny problem, and their config cross-checks."""
import functools
import math
import random

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from robust_jax import data, objectives
from robust_jax.config import defaults as config_defaults, validation
from robust_jax.config.schema import ConfigError
from robust_jax.kernels import inner_loop
from robust_jax.methods import amp, class_similarity, dropattack, lfm, mdl
from robust_jax.models import build_model
from robust_jax.objectives import LossAux

# ----------------------------------------------------------------------------- AMP on a quadratic
A = {'w': jnp.diag(jnp.array([1.0, 3.0])), 'b': jnp.array([[2.0]])}
B = {'w': jnp.array([1.0, -2.0]), 'b': jnp.array([0.5])}


def _quadratic_loss(params, model_state, batch, key):
  """L(θ) = Σ_leaf ½ θᵀ A θ - Bᵀ θ, so ∇L = A θ - B per leaf."""
  del batch, key
  value = sum(0.5 * p @ A[k] @ p - B[k] @ p for k, p in params.items())
  return value, LossAux(model_state, jnp.zeros((1, 2)), {})


def _grad(params):
  return {k: A[k] @ p - B[k] for k, p in params.items()}


def _amp_section(**overrides):
  return ml_collections.ConfigDict(dict(name='amp', epsilon=0.3, inner_lr=0.5, inner_steps=1,
                                        ball='per_tensor', inner_grad_clip=0.0,
                                        update_bn_on_inner_passes=True) | overrides)


@pytest.mark.parametrize('ball', ['per_tensor', 'global'])
def test_amp_first_step_matches_closed_form(ball):
  params = {'w': jnp.array([2.0, 1.0]), 'b': jnp.array([1.0])}
  config = _amp_section(ball=ball)
  loss_fn = amp.amp(config, _quadratic_loss)
  outer_grad = jax.grad(lambda p: loss_fn(p, {}, {}, jax.random.key(0))[0])(params)
  g = _grad(params)
  delta = {k: config.inner_lr * v for k, v in g.items()}
  if ball == 'per_tensor':
    delta = {k: d * min(1.0, config.epsilon / float(jnp.linalg.norm(d))) for k, d in delta.items()}
  else:
    norm = float(optax.tree.norm(delta))
    delta = {k: d * min(1.0, config.epsilon / norm) for k, d in delta.items()}
  expected = _grad({k: params[k] + delta[k] for k in params})
  chex.assert_trees_all_close(outer_grad, expected, rtol=1e-5)
  logged_norm = loss_fn(params, {}, {}, jax.random.key(0))[1].metrics['amp_delta_norm']
  np.testing.assert_allclose(logged_norm, optax.tree.norm(delta), rtol=1e-5)


@pytest.mark.parametrize('unroll', [False, True], ids=['fori_loop', 'unrolled'])
def test_amp_two_inner_steps_match_projected_ascent(unroll, monkeypatch):
  monkeypatch.setattr(amp, 'inner_loop', functools.partial(inner_loop.inner_loop, unroll=unroll))
  params = {'w': jnp.array([0.2, -0.1]), 'b': jnp.array([0.3])}
  config = _amp_section(inner_steps=2, epsilon=10.0, ball='global')  # ball inactive
  loss_fn = amp.amp(config, _quadratic_loss)
  outer_grad = jax.grad(lambda p: loss_fn(p, {}, {}, jax.random.key(0))[0])(params)
  delta = {k: config.inner_lr * v for k, v in _grad(params).items()}
  delta = {k: delta[k] + config.inner_lr * v
           for k, v in _grad({k: params[k] + delta[k] for k in params}).items()}
  chex.assert_trees_all_close(outer_grad, _grad({k: params[k] + delta[k] for k in params}),
                              rtol=1e-5)


def test_amp_equals_optax_sam_with_one_global_step_outside_the_ball():
  params = {'w': jnp.array([2.0, 1.0]), 'b': jnp.array([1.0])}
  epsilon, inner_lr, lr = 0.3, 5.0, 0.1  # ζ||g|| > ε: Δ = ε g / ||g||, SAM with ρ = ε
  assert inner_lr * float(optax.tree.norm(_grad(params))) > epsilon
  loss_fn = amp.amp(_amp_section(ball='global', epsilon=epsilon, inner_lr=inner_lr),
                    _quadratic_loss)
  ours = jax.grad(lambda p: loss_fn(p, {}, {}, jax.random.key(0))[0])(params)
  our_update = jax.tree.map(lambda g: -lr * g, ours)
  sam = optax.contrib.sam(optax.sgd(lr), optax.chain(optax.contrib.normalize(),
                                                     optax.sgd(epsilon)),
                          sync_period=2, opaque_mode=True)
  sam_update, _ = sam.update(_grad(params), sam.init(params), params,
                             grad_fn=lambda p, _: _grad(p))
  chex.assert_trees_all_close(our_update, sam_update, rtol=1e-5)


# ----------------------------------------------------------------------------- tiny model fixtures
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


def _ce_loss(model):
  return objectives.LOSSES.lookup('', 'cross_entropy').build(
      None, model, lambda labels: jax.nn.one_hot(labels, 10))


# ----------------------------------------------------------------------------- DropAttack
def _dropattack_section(p, **overrides):
  return ml_collections.ConfigDict(dict(
      name='dropattack', attack_probability=p, num_steps=1, attack_input=True, input_epsilon=0.7,
      input_norm='batch', attack_weights=True, weight_paths=('Conv_0/kernel',),
      weight_epsilon=0.2, weight_epsilon_relative=False) | overrides)


def _eval_loss(model, params, state, batch):
  """Deterministic cross-entropy (the model in eval mode: no dropout), for exact comparisons."""
  logits, _ = model.apply(params, state, batch['image'], train=False)
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']))
  return loss, LossAux(state, logits, {})


def test_dropattack_all_ones_mask_equals_unmasked_attack(tiny_model):
  model, params, state, batch = tiny_model
  loss_fn = lambda p, s, b, k: _eval_loss(model, p, s, b)
  da = dropattack.dropattack(_dropattack_section(1.0), loss_fn)
  value, grads = jax.value_and_grad(lambda p: da(p, state, batch, jax.random.key(1))[0])(params)
  # By hand: R_x = ε g_x / ||g_x||_F (whole batch), R_W = ε g_W / ||g_W||_F, K = 1.
  clean = lambda p, x: loss_fn(p, state, {**batch, 'image': x}, None)[0]
  g_params, g_x = jax.grad(clean, argnums=(0, 1))(params, batch['image'])
  x_adv = batch['image'] + 0.7 * g_x / jnp.linalg.norm(g_x)
  kernel_grad = g_params['Conv_0']['kernel']
  w_adv = jax.tree.map(lambda a: a, params)
  w_adv['Conv_0'] = dict(params['Conv_0'], kernel=params['Conv_0']['kernel']
                         + 0.2 * kernel_grad / jnp.linalg.norm(kernel_grad))
  expected = lambda p: (clean(p, batch['image']) + clean(p, x_adv)
                        + clean(jax.tree.map(lambda q, a, b: q + (a - b), p, w_adv, params),
                                batch['image']))
  expected_value, expected_grads = jax.value_and_grad(expected)(params)
  np.testing.assert_allclose(value, expected_value, rtol=1e-5)
  chex.assert_trees_all_close(grads, expected_grads, rtol=2e-4, atol=1e-6)


def test_dropattack_all_zeros_mask_equals_clean_training(tiny_model):
  model, params, state, batch = tiny_model
  loss_fn = lambda p, s, b, k: _eval_loss(model, p, s, b)
  da = dropattack.dropattack(_dropattack_section(0.0, num_steps=2), loss_fn)
  value, grads = jax.value_and_grad(lambda p: da(p, state, batch, jax.random.key(1))[0])(params)
  clean_value, clean_grads = jax.value_and_grad(lambda p: loss_fn(p, state, batch, None)[0])(
      params)
  # No coordinate is attacked: clean + 2 means of clean terms = 3 × the clean loss and gradient,
  # and an Adam step (invariant to the gradient's scale) is the clean-training step.
  np.testing.assert_allclose(value, 3 * clean_value, rtol=1e-6)
  chex.assert_trees_all_close(grads, jax.tree.map(lambda g: 3 * g, clean_grads), rtol=1e-4,
                              atol=1e-7)
  adam = optax.adam(1e-3)
  ours, _ = adam.update(grads, adam.init(params), params)
  clean_update, _ = adam.update(clean_grads, adam.init(params), params)
  chex.assert_trees_all_close(ours, clean_update, rtol=1e-4, atol=1e-9)


def test_dropattack_unknown_weight_path_is_a_clear_error(tiny_model):
  model, params, state, batch = tiny_model
  da = dropattack.dropattack(_dropattack_section(0.5, weight_paths=('conv1/kernel',)),
                             _ce_loss(model))
  with pytest.raises(ConfigError, match="'conv1/kernel' is not a parameter; parameters: Conv_0"):
    da(params, state, batch, jax.random.key(0))


# ----------------------------------------------------------------------------- MDL
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


# ----------------------------------------------------------------------------- class similarity
def test_class_similarity_with_identity_is_cross_entropy(tmp_path, tiny_model):
  model, params, state, batch = tiny_model
  off_diagonal = (np.ones((10, 10)) - np.eye(10)) / 9
  path = str(tmp_path / 's.npy')
  np.save(path, off_diagonal)
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.0))
  targets_fn = class_similarity.class_similarity_targets(section, 10)
  np.testing.assert_allclose(targets_fn(batch['label']), jax.nn.one_hot(batch['label'], 10))
  loss_fn = objectives.LOSSES.lookup('', 'cross_entropy').build(None, model, targets_fn)
  key = jax.random.key(0)
  logits, _ = model.apply(params, state, batch['image'], train=True, key=key)
  np.testing.assert_allclose(
      loss_fn(params, state, batch, key)[0],
      jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])),
      rtol=1e-6)
  section.alpha = 0.5
  targets = class_similarity.class_similarity_targets(section, 10)(batch['label'])
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(jnp.max(targets, -1), 0.5, rtol=1e-6)


def test_class_similarity_bad_matrix_is_a_clear_error(tmp_path):
  path = str(tmp_path / 'bad.npy')
  np.save(path, np.ones((3, 3)))
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  with pytest.raises(ConfigError, match=r'shape \(3, 3\), expected \(10, 10\)'):
    class_similarity.class_similarity_targets(section, 10)


def test_class_similarity_with_mass_on_the_diagonal_is_a_clear_error(tmp_path):
  path = str(tmp_path / 'diagonal.npy')
  np.save(path, np.full((10, 10), 0.1))  # rows sum to 1, but the true class has 0.1 of it
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  with pytest.raises(ConfigError, match=r'the diagonal must be 0 \(largest entry 0.1\)'):
    class_similarity.class_similarity_targets(section, 10)


def test_shipped_fashion_mnist_similarity_is_valid():
  from configs import class_similarity as config_file
  matrix = class_similarity.load_similarity(config_file.FASHION_MNIST_MATRIX, 10)
  np.testing.assert_allclose(np.diag(matrix), 0.0)


# ----------------------------------------------------------------------------- LFM
def test_lfm_masks_the_configured_fraction_of_channels():
  features = jnp.full((32, 12, 12, 8), 5.0)
  masked = lfm.local_feature_mask(features, jax.random.key(0), probability=1.0,
                                  channel_fraction=0.5, fill='zero')
  changed = np.asarray(jnp.any(masked != features, axis=(1, 2)))  # (B, C)
  np.testing.assert_array_equal(changed.sum(1), 4)
  area = np.asarray(jnp.mean(masked == 0, axis=(1, 2)))[changed]
  assert 0.01 <= area.min() and area.max() <= 0.5
  none = lfm.local_feature_mask(features, jax.random.key(0), probability=0.0,
                                channel_fraction=0.5)
  np.testing.assert_array_equal(none, features)
  half = lfm.local_feature_mask(jnp.full((400, 6, 6, 2), 5.0), jax.random.key(1),
                                probability=0.3, channel_fraction=1.0, fill='zero')
  assert 0.22 < float(jnp.mean(jnp.any(half == 0, axis=(1, 2, 3)))) < 0.38


def test_lfm_official_code_mode_masks_first_samples_with_row_stripes():
  features = jnp.full((12, 16, 8, 8), 5.0)
  masked = lfm.official_code_mask(features, jax.random.key(2), probability=1.0,
                                  channel_fraction=0.5, fill='zero', num_samples=8)
  changed = np.asarray(masked != features)
  assert not changed[8:].any() and changed[:8].any()
  rows = changed.any(axis=2)  # a masked row is masked across its full width
  np.testing.assert_array_equal(changed.all(axis=2), rows)


def test_lfm_only_in_training_and_only_at_configured_sites():
  config = config_defaults.default_config()
  config.model.update(widths=(4, 8), hidden_size=16)
  config.feature_mask = dict(name='lfm', sites=('conv2',), probability=1.0,
                             channel_fraction=1.0, area_range=(0.3, 0.4),
                             aspect_range=(0.5, 2.0), fill='zero', mode='paper',
                             official_code_samples=8)
  validation.validate_config(config)
  spec = data.SPECS['fashion_mnist']
  plain = build_model(config.model, spec)
  masked = build_model(config.model, spec, objectives.build_feature_transforms(config))
  params, state = plain.init(jax.random.key(0), spec.image_shape)
  x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
  key = jax.random.key(2)
  np.testing.assert_array_equal(masked.apply(params, state, x, train=False)[0],
                                plain.apply(params, state, x, train=False)[0])
  assert not np.allclose(masked.apply(params, state, x, train=True, key=key)[0],
                         plain.apply(params, state, x, train=True, key=key)[0])
  _, intermediates = masked.module.apply({'params': params}, x, train=True,
                                         rngs={'feature_mask': key, 'dropout': key},
                                         capture_intermediates=True, mutable=['intermediates'])
  conv1 = intermediates['intermediates']['Conv_0']['__call__'][0]
  assert float(jnp.mean(conv1 == 0)) < 0.6  # conv1 untouched: only ReLU zeros, no boxes


# ----------------------------------------------------------------------------- composition checks
def test_trades_with_an_adversary_is_a_config_error():
  from configs import fashion_mnist_adversarial
  config = fashion_mnist_adversarial.get_config('trades')
  config.adversary = fashion_mnist_adversarial.get_config('pgd').adversary
  with pytest.raises(ConfigError, match='TRADES makes its own adversarial examples'):
    validation.validate_config(config)


def test_dropattack_input_attack_with_adversary_is_a_config_error():
  from configs import dropattack as dropattack_config
  from configs import fashion_mnist_adversarial
  config = dropattack_config.get_config('fashion_mnist')
  config.adversary = fashion_mnist_adversarial.get_config('pgd').adversary
  with pytest.raises(ConfigError, match="DropAttack's input attack needs gradients"):
    validation.validate_config(config)


def test_lfm_official_code_mode_equals_the_sequential_reference_loop():
  """The vectorised mask equals the released code's loop, written with its literal chained slicing
  on a (H, W) plane (later draws overwrite earlier ones)."""
  x = jax.random.normal(jax.random.key(0), (10, 16, 8, 6))
  key = jax.random.key(4)
  out = lfm.official_code_mask(x, key, probability=1.0, channel_fraction=2.0, num_samples=8)
  batch, height, width, channels = x.shape
  num_draws = 12
  _, channel_key, box_key, fill_key = jax.random.split(key, 4)
  drawn = np.asarray(jax.random.randint(channel_key, (num_draws,), 0, channels))
  h, w, x1, y1 = (np.asarray(a) for a in lfm.official_code_boxes(
      box_key, (batch, num_draws), height, width))
  values = np.asarray(jax.random.uniform(fill_key, (batch, num_draws)))
  expected = np.asarray(x).copy()
  for i in range(8):
    for j in range(num_draws):
      plane = expected[i, :, :, drawn[j]]  # the code's x[i][c], a (H, W) view
      plane[y1[i, j]:y1[i, j] + h[i, j]][x1[i, j]:x1[i, j] + w[i, j]] = values[i, j]
  assert (expected != np.asarray(x)).sum() > 100
  np.testing.assert_array_equal(out, expected)


def _released_code_stripe_rows(rng, height=128, width=64):
  """Rows filled by one `x[i][c][y1:y1+h][x1:x1+w] = v` of the released code, with its CREP
  sampler written out from the official model.py (Python's random, literal numpy slicing)."""
  for _ in range(100):
    target_area = rng.uniform(0.02, 0.4) * height * width
    aspect = rng.uniform(0.3, 1 / 0.3)
    h, w = int(round(math.sqrt(target_area * aspect))), int(round(math.sqrt(target_area / aspect)))
    if w < width and h < height:
      x1, y1 = rng.randint(0, height - h), rng.randint(0, width - w)
      break
  plane = np.zeros((height, width))
  plane[y1:y1 + h][x1:x1 + w] = 1
  return int(plane[:, 0].sum())


def test_lfm_official_code_stripes_have_the_released_codes_statistics():
  """At the code's 128×64 map: how often the stripe is empty and how many rows it has, from an
  independent simulation of the released code (34 % empty, 16 rows on average)."""
  rng = random.Random(0)
  code_rows = np.array([_released_code_stripe_rows(rng) for _ in range(20000)])
  start, stop = lfm.official_code_stripes(jax.random.key(0), (20000,), 128, 64)
  ours = np.maximum(np.asarray(stop - start), 0)
  for statistic, tolerance in ((lambda r: np.mean(r == 0), 0.015), (np.mean, 0.4),
                               (lambda r: np.mean(r >= 30), 0.015)):
    assert abs(statistic(ours) - statistic(code_rows)) < tolerance
  assert 0.32 < np.mean(code_rows == 0) < 0.37 and 15 < code_rows.mean() < 17


@pytest.mark.parametrize('write', [
    lambda path: np.savetxt(path, np.eye(10)),
    lambda path: open(path, 'w').write('a,b\n0.5,0.5\n'),
])
def test_a_similarity_file_that_is_no_npy_array_is_a_config_error(tmp_path, write):
  path = str(tmp_path / 's.npy')
  write(path)
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  with pytest.raises(ConfigError, match=r"^config.targets.matrix_path='\S+s.npy': not readable as "
                     r'a .npy matrix \(.*\); write S̃ with np.save$'):
    class_similarity.class_similarity_targets(section, 10)


def test_a_float16_similarity_matrix_is_read_within_its_precision(tmp_path):
  path = str(tmp_path / 's.npy')
  off_diagonal = ((np.ones((10, 10)) - np.eye(10)) / 9).astype(np.float16)
  assert abs(off_diagonal.sum(1, dtype=np.float64) - 1).max() > 1e-4
  np.save(path, off_diagonal)
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  targets = class_similarity.class_similarity_targets(section, 10)(jnp.arange(10))
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
