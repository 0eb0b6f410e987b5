"""The methods' pure functions on a model that is not robust_jax's: a pure-JAX MLP (a dict of arrays
and a function), called with plain Python numbers, under jit and vmap, and checked against the
config path (the registered adapters on a ModelFns-compatible wrapper of the same MLP) and against
the formulas."""
import dataclasses
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import robust_jax as rj
from robust_jax import objectives

NUM_CLASSES = 3
DROPOUT = 0.5


def mlp_init(key, hidden=6):
  k1, k2 = jax.random.split(key)
  return {'w1': jax.random.normal(k1, (16, hidden)) * 0.5, 'b1': jnp.zeros(hidden),
          'w2': jax.random.normal(k2, (hidden, NUM_CLASSES)) * 0.5, 'b2': jnp.zeros(NUM_CLASSES)}


def mlp(params, images, key=None):
  """Logits (B, 3) of images (B, 4, 4, 1); dropout on the hidden layer when a key is given."""
  hidden = jax.nn.relu(images.reshape(images.shape[0], -1) @ params['w1'] + params['b1'])
  if key is not None:
    keep = jax.random.bernoulli(key, 1 - DROPOUT, hidden.shape)
    hidden = jnp.where(keep, hidden / (1 - DROPOUT), 0.0)
  return hidden @ params['w2'] + params['b2']


@dataclasses.dataclass(frozen=True)
class AsModelFns:
  """The MLP behind robust_jax's model interface: `apply(params, state, x, *, train, key)`."""

  dropout: bool = True

  def apply(self, params, model_state, images, *, train, key=None):
    return mlp(params, images, key if train and self.dropout else None), model_state


def one_hot(labels):
  return jax.nn.one_hot(labels, NUM_CLASSES)


def mean_ce(params, images, labels, key=None):
  return jnp.mean(rj.losses.soft_cross_entropy(mlp(params, images, key), one_hot(labels)))


def config_cross_entropy():
  """The config path's data loss: the registered cross_entropy adapter on the wrapped MLP."""
  return objectives.LOSSES.lookup('', 'cross_entropy').build(None, AsModelFns(), one_hot)


@pytest.fixture(scope='module')
def problem():
  images = jax.random.uniform(jax.random.key(1), (5, 4, 4, 1))
  labels = jnp.array([0, 1, 2, 1, 0], jnp.int32)
  return mlp_init(jax.random.key(0)), images, labels


def close(actual, expected, rtol=1e-5):
  chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=1e-6)


def config_and_pure(config_loss, pure, params, images, labels, key):
  """(((value, aux), grads) of the config path's LossFn, pure(params)), compiled together."""
  batch = {'image': images, 'label': labels}
  return jax.jit(lambda p: (jax.value_and_grad(config_loss, has_aux=True)(p, {}, batch, key),
                            pure(p)))(params)


# ----------------------------------------------------------------------------- AMP
@pytest.mark.parametrize('ball, steps, clip', [('per_tensor', 1, 0.0), ('global', 2, 0.5)])
def test_amp_perturbation_gives_the_config_paths_gradient(problem, ball, steps, clip):
  params, images, labels = problem
  key = jax.random.key(7)
  section = ml_collections.ConfigDict(dict(
      epsilon=0.3, inner_lr=2.0, inner_steps=steps, ball=ball, inner_grad_clip=clip,
      update_bn_on_inner_passes=True))

  def pure(params):  # the adapter's key contract: split -> (inner key, outer key)
    inner_key, outer_key = jax.random.split(key)
    loss_fn = lambda p, k: mean_ce(p, images, labels, k)
    delta, norm, state = rj.amp.perturbation(loss_fn, params, epsilon=0.3, inner_lr=2.0,
                                             inner_steps=steps, ball=ball, inner_grad_clip=clip,
                                             key=inner_key)
    assert state is None
    return jax.value_and_grad(loss_fn)(optax.apply_updates(params, delta), outer_key), norm

  ((value, aux), grads), ((pure_value, pure_grads), norm) = config_and_pure(
      rj.amp.amp(section, config_cross_entropy()), pure, params, images, labels, key)
  np.testing.assert_allclose(pure_value, value, rtol=1e-5)
  close(pure_grads, grads)
  np.testing.assert_allclose(norm, aux.metrics['amp_delta_norm'], rtol=1e-5)
  assert 0 < float(norm) <= 0.3 * (1 if ball == 'global' else 2) + 1e-6


def test_amp_perturbation_is_the_closed_form_step_and_vmaps_over_an_ensemble(problem):
  params, images, labels = problem
  loss_fn = lambda p: mean_ce(p, images, labels)
  # One step inside the ball: Δ = ζ ∇L(θ) (ε large); outside: Δ_i = ε g_i / ||g_i|| per tensor.
  g = jax.grad(loss_fn)(params)
  inside = rj.amp.perturbation(loss_fn, params, epsilon=100.0, inner_lr=0.1, inner_steps=1)
  close(inside.delta, jax.tree.map(lambda x: 0.1 * x, g))
  outside = rj.amp.perturbation(loss_fn, params, epsilon=1e-3, inner_lr=1.0, inner_steps=1)
  close(outside.delta, jax.tree.map(lambda x: 1e-3 * x / jnp.linalg.norm(x), g), rtol=1e-4)
  ensemble = jax.tree.map(lambda *p: jnp.stack(p), params,
                          mlp_init(jax.random.key(3)), mlp_init(jax.random.key(4)))
  delta = lambda p: rj.amp.perturbation(loss_fn, p, epsilon=0.2, inner_lr=1.0, inner_steps=2,
                                        ball='global').delta
  batched, one_by_one = jax.jit(lambda e: (jax.vmap(delta)(e), [
      delta(jax.tree.map(lambda x, i=i: x[i], e)) for i in range(3)]))(ensemble)
  close(batched, jax.tree.map(lambda *d: jnp.stack(d), *one_by_one))


def test_amp_perturbation_threads_state_and_accepts_aux(problem):
  params, images, labels = problem

  def loss_fn(p, *, state):  # counts its passes in the state, returns metrics as aux
    loss = mean_ce(p, images, labels)
    return loss, ({'loss': loss}, state + 1)

  result = rj.amp.perturbation(loss_fn, params, epsilon=0.1, inner_lr=1.0, inner_steps=3,
                               has_aux=True, state=jnp.int32(10))
  assert int(result.state) == 13
  with_aux = rj.amp.perturbation(lambda p: (mean_ce(p, images, labels), 'aux'), params,
                                 epsilon=0.1, inner_lr=1.0, inner_steps=3, has_aux=True)
  close(with_aux.delta, result.delta)


# ----------------------------------------------------------------------------- DropAttack
def test_dropattack_gradient_gives_the_config_paths_loss_and_gradient(problem):
  params, images, labels = problem
  key = jax.random.key(5)
  options = dict(attack_probability=0.5, num_steps=2, input_epsilon=0.7, input_norm='batch',
                 weight_paths=('w1', 'b2'), weight_epsilon=0.1, weight_epsilon_relative=True)
  section = ml_collections.ConfigDict(dict(attack_input=True, attack_weights=True, **options))
  loss_fn = lambda p, x, k: (mean_ce(p, x, labels, k), mlp(p, x, k))
  ((value, aux), grads), result = config_and_pure(
      rj.dropattack.dropattack(section, config_cross_entropy()),
      lambda p: rj.dropattack.gradient(loss_fn, p, images, key, has_aux=True, **options),
      params, images, labels, key)
  np.testing.assert_allclose(result.loss, value, rtol=1e-5)
  close(result.grads, grads)
  np.testing.assert_allclose(result.clean_loss, aux.metrics['clean_loss'], rtol=1e-5)
  close(result.aux, aux.logits)  # the clean pass's aux
  clean_grads = jax.grad(mean_ce)(params, images, labels, jax.random.split(key, 5)[0])
  assert not np.allclose(result.grads['w1'], 5 * clean_grads['w1'], rtol=1e-3)


def test_dropattack_with_nothing_attacked_is_three_clean_passes(problem):
  params, images, labels = problem
  loss_fn = lambda p, x, k: mean_ce(p, x, labels)
  result = jax.jit(lambda p: rj.dropattack.gradient(
      loss_fn, p, images, jax.random.key(0), attack_probability=0.0, num_steps=1,
      input_epsilon=1.0, weight_paths=('w1',), weight_epsilon=1.0))(params)
  clean_value, clean_grads = jax.value_and_grad(mean_ce)(params, images, labels)
  np.testing.assert_allclose(result.loss, 3 * clean_value, rtol=1e-6)
  close(result.grads, jax.tree.map(lambda g: 3 * g, clean_grads))


# ----------------------------------------------------------------------------- MDL
def test_mdl_loss_gives_the_config_paths_loss_and_gradient(problem):
  params, images, labels = problem
  key = jax.random.key(2)
  section = ml_collections.ConfigDict(dict(num_subnetworks=3, orthogonality_weight=0.7))

  def pure(params):  # the adapter's key contract: split K, one key per sub-network
    logits_k = jax.vmap(lambda k: mlp(params, images, k))(jax.random.split(key, 3))
    return rj.mdl.loss(logits_k, labels, weight=0.7)

  ((value, aux), grads), (pure_value, pure_grads) = config_and_pure(
      rj.mdl.mdl_loss(section, AsModelFns(), one_hot), jax.value_and_grad(pure), params, images,
      labels, key)
  np.testing.assert_allclose(pure_value, value, rtol=1e-5)
  close(pure_grads, grads)
  keys = jax.random.split(key, 3)
  cross_entropy, ortho = rj.mdl.terms(jax.vmap(lambda k: mlp(params, images, k))(keys), labels)
  np.testing.assert_allclose(ortho, aux.metrics['orthogonality'], rtol=1e-5)
  np.testing.assert_allclose(cross_entropy, jnp.mean(jax.vmap(
      lambda k: mean_ce(params, images, labels, k))(keys)), rtol=1e-5)
  assert 0 < float(ortho) < 1


# ----------------------------------------------------------------------------- TRADES
def test_trades_loss_gives_the_config_paths_loss_and_gradient(problem):
  params, images, labels = problem
  key = jax.random.key(4)
  options = dict(beta=6.0, epsilon=0.2, step_size=0.05, num_steps=3, norm='linf')
  section = ml_collections.ConfigDict(dict(model_mode='eval', **options))
  # Without dropout the passes' keys do not matter; the attack's start key is the second of 4.
  start_key = jax.random.split(key, 4)[1]
  pure = jax.value_and_grad(lambda p: rj.trades.loss(mlp, p, images, labels, start_key,
                                                     **options))
  ((value, aux), grads), (pure_value, pure_grads) = config_and_pure(
      rj.trades.trades_loss(section, AsModelFns(dropout=False), one_hot), pure, params, images,
      labels, key)
  np.testing.assert_allclose(pure_value, value, rtol=1e-5)
  close(pure_grads, grads)
  natural = jnp.mean(rj.losses.cross_entropy(mlp(params, images), labels))
  np.testing.assert_allclose(value, natural + 6.0 * aux.metrics['trades_kl'], rtol=1e-5)
  assert float(aux.metrics['trades_kl']) > 0


# ----------------------------------------------------------------------------- LFM
LFM_OPTIONS = dict(probability=1.0, channel_fraction=0.5, area_range=(0.1, 0.4),
                   aspect_range=(0.5, 2.0), fill='zero')


@pytest.mark.parametrize('mode', ['paper', 'official_code'])
def test_lfm_mask_is_the_config_paths_transform(mode):
  features = jax.random.normal(jax.random.key(0), (3, 6, 6, 4))
  section = ml_collections.ConfigDict(dict(mode=mode, official_code_samples=2, **LFM_OPTIONS))
  masked, configured = jax.jit(lambda f, k: (
      rj.lfm.mask(f, k, mode=mode, official_code_samples=2, **LFM_OPTIONS),
      rj.lfm.lfm(section)(f, k)))(features, jax.random.key(3))
  np.testing.assert_array_equal(masked, configured)
  assert 0 < int(jnp.sum(masked != features)) < features.size // 2


# ----------------------------------------------------------------------------- class similarity
def test_class_similarity_targets_match_the_formula_and_the_config_path(tmp_path):
  similarity = np.array([[0.0, 0.75, 0.25], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
  labels = jnp.array([2, 0, 1, 0], jnp.int32)
  # S = 0.8 I + 0.2 S̃, rows 2, 0, 1, 0.
  expected = np.array([[0.2, 0.0, 0.8], [0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.8, 0.15, 0.05]])
  targets = jax.jit(lambda y, s: rj.class_similarity.targets(y, s, alpha=0.2))(
      labels, jnp.asarray(similarity, jnp.float32))
  np.testing.assert_allclose(targets, expected, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(lambda y: rj.class_similarity.targets(
      y, similarity, alpha=0.2))(labels), expected, rtol=1e-6)
  path = str(tmp_path / 'similarity.npy')
  np.save(path, similarity)
  section = ml_collections.ConfigDict(dict(matrix_path=path, alpha=0.2))
  np.testing.assert_array_equal(
      rj.class_similarity.class_similarity_targets(section, 3)(labels),
      rj.class_similarity.targets(labels, similarity, alpha=0.2))


# ----------------------------------------------------------------------------- losses
def test_losses_match_optax_and_the_kl_formula():
  logits = jax.random.normal(jax.random.key(0), (4, 5))
  reference = jax.random.normal(jax.random.key(1), (4, 5))
  labels = jnp.array([0, 4, 2, 2])
  targets = jax.nn.softmax(reference)
  np.testing.assert_allclose(rj.losses.cross_entropy(logits, labels),
                             optax.softmax_cross_entropy_with_integer_labels(logits, labels),
                             rtol=1e-6)
  np.testing.assert_allclose(rj.losses.soft_cross_entropy(logits, targets),
                             optax.softmax_cross_entropy(logits, targets), rtol=1e-6)
  p, q = np.asarray(targets), np.asarray(jax.nn.softmax(logits))
  np.testing.assert_allclose(rj.losses.kl_divergence(reference, logits),
                             np.sum(p * np.log(p / q), -1), rtol=1e-5)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize('call, message', [
    (lambda p, x, y: rj.amp.perturbation(lambda q: mean_ce(q, x, y), p, epsilon=0.1,
                                         inner_lr=1.0, inner_steps=1, ball='layer'),
     "ball='layer': must be one of 'per_tensor', 'global'"),
    (lambda p, x, y: rj.amp.perturbation(lambda q: mean_ce(q, x, y), p, epsilon=0.1,
                                         inner_lr=1.0, inner_steps=0),
     'inner_steps=0: must be an int >= 1'),
    (lambda p, x, y: rj.dropattack.gradient(
        lambda q, z, k: mean_ce(q, z, y), p, x, jax.random.key(0), attack_probability=0.5,
        num_steps=1, input_epsilon=1.0, weight_paths=('Dense_0/kernel',)),
     "weight_paths=('Dense_0/kernel',): 'Dense_0/kernel' is not a parameter; parameters: b1, b2, "
     'w1, w2'),
    (lambda p, x, y: rj.dropattack.gradient(
        lambda q, z, k: mean_ce(q, z, y), p, x, jax.random.key(0), attack_probability=0.5,
        num_steps=1, input_epsilon=1.0, input_norm='l2', attack_weights=False),
     "input_norm='l2': must be one of 'batch', 'per_example'"),
    (lambda p, x, y: rj.mdl.loss(mlp(p, x), y, weight=1.0),
     'logits_k.shape=(5, 3): must be (K, B, C)'),
    (lambda p, x, y: rj.lfm.mask(x, jax.random.key(0), probability=0.5, channel_fraction=0.5,
                                 mode='code'),
     "mode='code': must be one of 'paper', 'official_code'"),
    (lambda p, x, y: rj.class_similarity.targets(y, np.eye(3), alpha=1.5),
     'alpha=1.5: must be a finite number in [0, 1]'),
], ids=['amp_ball', 'amp_steps', 'dropattack_path', 'dropattack_norm', 'mdl_shape', 'lfm_mode',
        'class_similarity_alpha'])
def test_bad_arguments_are_one_line_errors(problem, call, message):
  with pytest.raises((ValueError, TypeError), match=re.escape(message)) as error:
    call(*problem)
  assert '\n' not in str(error.value)


# ----------------------------------------------------------------------------- the public surface
PUBLIC_FUNCTIONS = {
    'amp': ['perturbation', 'project'], 'dropattack': ['gradient'],
    'mdl': ['loss', 'terms', 'orthogonality'],
    'trades': ['loss', 'adversarial_examples', 'terms'], 'lfm': ['mask'],
    'class_similarity': ['targets', 'similarity_targets_matrix'],
    'losses': ['cross_entropy', 'soft_cross_entropy', 'kl_divergence'],
}


def test_one_import_gives_the_documented_pure_functions():
  for module_name, names in PUBLIC_FUNCTIONS.items():
    module = getattr(rj, module_name)
    assert module_name in rj.__all__
    for name in names:
      assert name in module.__all__, (module_name, name)
      doc = getattr(module, name).__doc__ or ''
      assert re.search(r'\((B|K|C)\b|pytree', doc) and len(doc) > 100, f'{module_name}.{name}'
  for name in rj.__all__:
    assert hasattr(rj, name), name
  for module in (rj.methods, rj.attacks, rj.models, rj.data, *(
      getattr(rj.methods, m) for m in rj.methods.__all__)):
    for name in module.__all__:
      assert hasattr(module, name), (module.__name__, name)


def test_import_robust_jax_does_not_import_tensorflow():
  code = ('import sys, robust_jax; bad = sorted(m for m in sys.modules '
          'if m.split(".")[0] in ("tensorflow", "tensorflow_datasets")); print(bad); '
          'sys.exit(bool(bad))')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
