"""Mixed precision, `config.train.compute_dtype='bfloat16'`: convolutions and hidden matmuls run in
bfloat16; parameters, optimizer state, batch-norm statistics, logits, losses, softmax and the
attacks' steps and projections stay float32, for every method, attack and model."""
import collections
import copy

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import attacks, data, losses, objectives, sharding
from robust_jax.config import defaults as config_defaults, validation
from robust_jax.config.schema import ConfigError
from robust_jax.data import pipeline
from robust_jax.models import MODELS, build_model
from robust_jax.training import optim, state as train_state, step as train_step
from tests import helpers
from tests.test_methods_sharding import CONFIGS as METHOD_CONFIGS

SPEC = data.SPECS['fashion_mnist']
# Primitives that carry the float32 numerics: softmax, log-softmax and losses (exp, log), the
# attacks' L∞ steps and projections (sign, min), norms (sqrt: L2 attacks, AMP, DropAttack) and
# batch norm's variance (rsqrt).
FLOAT32_ONLY = ('exp', 'log', 'sign', 'min', 'sqrt', 'rsqrt')
IMAGE_MODELS = ('cnn', 'mlp', 'preact_resnet18', 'vgg16', 'wrn28_10', 'wrn34_10')
HIDDEN_DENSE_MODELS = ('cnn', 'mlp', 'vgg16')  # the ResNets' one Dense is the float32 head


def _method_configs():
  """Every method of test_methods_sharding (tiny CNN with batch norm) but the weight perturbations
  bfloat16 refuses (AMP; DropAttack attacks its inputs only), label smoothing, and PGD-AT on an
  MLP."""
  configs = {name: copy.deepcopy(config) for name, config in METHOD_CONFIGS.items()
             if name != 'amp'}  # refused in bfloat16 (test_weight_perturbation_precision.py)
  configs['dropattack'].weight_perturbation.attack_weights = False  # its input attack only
  configs['label_smoothing'] = copy.deepcopy(METHOD_CONFIGS['erm_dropout'])
  configs['label_smoothing'].targets = dict(name='label_smoothing', smoothing=0.1)
  configs['pgd_at_mlp'] = copy.deepcopy(METHOD_CONFIGS['pgd_at'])
  configs['pgd_at_mlp'].model = dict(name='mlp', dropout_rate=0.0, dropout_sites=(),
                                     hidden_sizes=(16,))
  return configs


CONFIGS = _method_configs()


def _batch(size=8):
  images, labels = helpers.quadrant_images(size, seed=3)
  return {'image': jnp.asarray(images), 'label': jnp.asarray(labels)}


def _step_and_state(config, compute_dtype):
  """The jitted train step of `config` in `compute_dtype` on one device, and its initial state."""
  config = copy.deepcopy(config)
  config.train.compute_dtype = compute_dtype
  validation.validate_config(config)
  mesh = sharding.make_mesh(jax.devices()[:1])
  model = build_model(config.model, SPEC, objectives.build_feature_transforms(config),
                      compute_dtype=config.train.compute_dtype)
  optimizer, _ = optim.make_optimizer(config.optimizer, 10, 100)
  step = train_step.make_train_step(objectives.build_loss_fn(config, model, SPEC.num_classes),
                                    optimizer, pipeline.make_augment_fn('none', 0),
                                    jax.random.key(5), mesh)
  return step, train_state.init_train_state(model, optimizer, jax.random.key(0), SPEC.image_shape)


def _operand_dtypes(jaxpr) -> dict[str, set[str]]:
  """{primitive name: dtypes of its operands} over `jaxpr` and every jaxpr nested in it (jit,
  scan / fori_loop, cond, custom_jvp)."""
  found = collections.defaultdict(set)

  def walk(inner):
    for eqn in inner.eqns:
      found[eqn.primitive.name].update(str(v.aval.dtype) for v in eqn.invars
                                       if hasattr(v.aval, 'dtype'))
      for param in eqn.params.values():
        for sub in param if isinstance(param, (list, tuple)) else (param,):
          if isinstance(sub, jax.extend.core.ClosedJaxpr):
            walk(sub.jaxpr)
          elif isinstance(sub, jax.extend.core.Jaxpr):
            walk(sub)

  walk(jaxpr.jaxpr)
  return found


def _float_dtypes(tree) -> set[str]:
  return {str(leaf.dtype) for leaf in jax.tree.leaves(tree)
          if jnp.issubdtype(leaf.dtype, jnp.floating)}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_bfloat16_train_step(name):
  batch = _batch()
  step, state = _step_and_state(CONFIGS[name], 'bfloat16')
  found = _operand_dtypes(jax.make_jaxpr(step)(state, batch))
  if CONFIGS[name].model.name == 'cnn':
    assert found['conv_general_dilated'] == {'bfloat16'}  # forward and both backward convs
  assert 'bfloat16' in found['dot_general']
  assert {p: found[p] for p in FLOAT32_ONLY if 'bfloat16' in found[p]} == {}
  assert found['exp'] and found['log']  # the softmax / losses were found, and are float32
  float32_step, float32_state = _step_and_state(CONFIGS[name], 'float32')
  assert not any('bfloat16' in dtypes
                 for dtypes in _operand_dtypes(jax.make_jaxpr(float32_step)(
                     float32_state, batch)).values())  # the default computes nothing in bf16

  new_state, metrics = step(state, batch)
  _, float32_metrics = float32_step(float32_state, batch)
  assert _float_dtypes((new_state.params, new_state.opt_state, new_state.model_state)) == {
      'float32'}
  assert metrics['loss'].dtype == jnp.float32 and np.isfinite(float(metrics['loss']))
  # An attack follows sign(∇x), whose small coordinates flip in bf16, so it takes another path:
  # measured |Δloss| / loss up to 3.7 % (TRADES) with an inner attack, 0.15 % without.
  attacked = CONFIGS[name].adversary.name != 'none' or CONFIGS[name].loss.name == 'trades'
  np.testing.assert_allclose(float(metrics['loss']), float(float32_metrics['loss']),
                             rtol=0.1 if attacked else 0.01)
  if new_state.model_state:
    stats = new_state.model_state['batch_stats']['BatchNorm_0']['mean']
    assert float(jnp.abs(stats).max()) > 0  # the statistics were updated, in float32


def _tiny_cnn_logits_fn(compute_dtype):
  """images (B, 28, 28, 1) -> logits (B, 10) of a tiny CNN with batch norm, in eval mode."""
  section = ml_collections.ConfigDict(config_defaults.cnn_model(
      widths=(4, 8), kernel_size=3, hidden_size=16, batch_norm=True))
  model = build_model(section, SPEC, compute_dtype=compute_dtype)
  params, state = model.init(jax.random.key(0), SPEC.image_shape)
  return lambda images: model.apply(params, state, images, train=False)[0]


def _forward(model, train):
  return lambda params, state, images: model.apply(params, state, images, train=train,
                                                   key=jax.random.key(1))


@pytest.mark.parametrize('name', IMAGE_MODELS)
def test_every_image_model_computes_in_bfloat16_with_float32_variables_and_logits(name):
  entry = MODELS.lookup('', name)
  section = ml_collections.ConfigDict(dict(name=name, **entry.defaults))
  model = build_model(section, data.SPECS['cifar10'], compute_dtype='bfloat16')
  params, state = jax.eval_shape(lambda: model.init(jax.random.key(0), (32, 32, 3)))
  assert _float_dtypes((params, state)) <= {'float32'}
  images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  for train in (False, True):
    forward = _forward(model, train)
    logits, new_state = jax.eval_shape(forward, params, state, images)
    assert logits.dtype == jnp.float32 and _float_dtypes(new_state) <= {'float32'}
    found = _operand_dtypes(jax.make_jaxpr(forward)(params, state, images))
    if name != 'mlp':
      assert found['conv_general_dilated'] == {'bfloat16'}
    if name in HIDDEN_DENSE_MODELS:
      assert 'bfloat16' in found['dot_general']
    # Forward reductions (batch-norm statistics, the global average pool) sum in float32.
    assert 'bfloat16' not in found['reduce_sum']


ATTACKS = {
    'fgsm_linf': lambda f, x, y, k: attacks.fgsm(f, x, y, epsilon=0.1),
    'fgsm_l2': lambda f, x, y, k: attacks.fgsm(f, x, y, epsilon=1.0, norm='l2'),
    'pgd_linf_restarts': lambda f, x, y, k: attacks.pgd(f, x, y, k, epsilon=0.1, step_size=0.04,
                                                        num_steps=3, restarts=2),
    'pgd_l2_kl': lambda f, x, y, k: attacks.pgd(f, x, y, k, epsilon=1.0, step_size=0.4,
                                                num_steps=3, norm='l2', loss='kl'),
    'apgd_ce_linf': lambda f, x, y, k: attacks.apgd(f, x, y, k, epsilon=0.1, num_steps=4),
    'apgd_dlr_l2': lambda f, x, y, k: attacks.apgd(f, x, y, k, epsilon=1.0, num_steps=4,
                                                   norm='l2', loss='dlr'),
}
EPSILON = {'linf': 0.1, 'l2': 1.0}


@pytest.mark.parametrize('name', sorted(ATTACKS))
def test_attacks_on_a_bfloat16_model_stay_in_the_ball_and_in_float32(name):
  logits_fn = _tiny_cnn_logits_fn('bfloat16')
  batch = _batch()
  images = batch['image'].astype(jnp.float32) / 255
  attack = jax.jit(lambda x: ATTACKS[name](logits_fn, x, batch['label'], jax.random.key(2)))
  adversarial = attack(images)
  norm = 'l2' if '_l2' in name else 'linf'
  assert adversarial.dtype == jnp.float32
  assert float(adversarial.min()) >= 0.0 and float(adversarial.max()) <= 1.0
  distance = attacks.distance(adversarial, images, norm)
  assert float(distance.max()) <= EPSILON[norm] * (1 + 1e-5)
  assert float(distance.min()) > 0  # every example moved: the bf16 input gradients are not 0
  found = _operand_dtypes(jax.make_jaxpr(attack)(images))
  assert found['conv_general_dilated'] == {'bfloat16'}
  assert {p: found[p] for p in FLOAT32_ONLY if 'bfloat16' in found[p]} == {}


def _input_gradient(compute_dtype, images, labels):
  """(logits, ∇_x Σ_b CE) of the tiny CNN computing in `compute_dtype`."""
  logits_fn = _tiny_cnn_logits_fn(compute_dtype)
  loss = lambda x: jnp.sum(losses.cross_entropy(logits_fn(x), labels))
  return jax.jit(lambda x: (logits_fn(x), jax.grad(loss)(x)))(images)


def test_bfloat16_logits_and_input_gradients_are_float32_and_close_to_float32s():
  batch = _batch()
  images = batch['image'].astype(jnp.float32) / 255
  logits, gradient = _input_gradient('bfloat16', images, batch['label'])
  float32_logits, float32_gradient = _input_gradient('float32', images, batch['label'])
  assert logits.dtype == gradient.dtype == jnp.float32
  np.testing.assert_allclose(logits, float32_logits, atol=0.05)
  cosine = jnp.vdot(gradient, float32_gradient) / (
      jnp.linalg.norm(gradient) * jnp.linalg.norm(float32_gradient))
  assert float(cosine) > 0.95


def test_compute_dtype_defaults_to_float32_and_refuses_float16():
  assert config_defaults.default_config().train.compute_dtype == 'float32'
  assert config_defaults.cifar_config('cifar10', 'preact_resnet18').train.compute_dtype == (
      'float32')
  config = helpers.tiny_config('unused.npz', compute_dtype='bfloat16')
  validation.validate_config(config)
  config.train.compute_dtype = 'float16'
  with pytest.raises(ConfigError, match=r"^config\.train\.compute_dtype='float16': must be one "
                     r"of: float32, bfloat16 \(float16 would need loss scaling, which robust_jax "
                     r"does not do\)$"):
    validation.validate_config(config)
  with pytest.raises(ValueError, match=r"^compute_dtype='float16': must be one of 'float32', "
                     r"'bfloat16'$"):
    build_model(config.model, SPEC, compute_dtype='float16')
