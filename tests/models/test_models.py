"""Each model's output shape for each dataset, the dropout / feature-hook mechanics, and the CIFAR
models against the official AMP code: parameter counts, shortcuts, padding, initialisers, BN."""
import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import data
from robust_jax.config import defaults as config_defaults
from robust_jax.models import MODELS, build_model, preact_resnet
from robust_jax.models.base import BatchNorm
from robust_jax.models.wide_resnet import WideResNet

MODEL_SECTIONS = {
    'mlp': dict(name='mlp', dropout_rate=0.0, dropout_sites=(), hidden_sizes=(32,)),
    'cnn': config_defaults.cnn_model(),
    'vgg16': config_defaults.plain_model('vgg16'),
    'preact_resnet18': config_defaults.plain_model('preact_resnet18'),
    'wrn28_10': config_defaults.plain_model('wrn28_10'),
    'wrn34_10': config_defaults.plain_model('wrn34_10'),
}
# Text models, default sections (the official sizes); their inputs are token ids.
TEXT_MODELS = ('gru', 'lstm', 'textcnn')
MODEL_SECTIONS.update({name: MODELS.default_section('', name) for name in TEXT_MODELS})


def test_every_registered_model_is_covered():
  assert sorted(MODEL_SECTIONS) == MODELS.names()


def _modality(model_name):
  return 'text' if model_name in TEXT_MODELS else 'image'


@pytest.mark.parametrize('model_name, dataset', [
    (model_name, dataset) for model_name in sorted(MODEL_SECTIONS) for dataset in sorted(data.SPECS)
    if data.SPECS[dataset].modality == _modality(model_name)])
def test_output_shape(model_name, dataset):
  import ml_collections
  spec = data.spec_for(ml_collections.ConfigDict(
      dict(name=dataset, **config_defaults.TEXT_DATASET_DEFAULTS)))
  model = build_model(ml_collections.ConfigDict(MODEL_SECTIONS[model_name]), spec)
  images = jax.ShapeDtypeStruct((2, *spec.image_shape),
                                jnp.int32 if spec.modality == 'text' else jnp.float32)
  params, state = jax.eval_shape(lambda: model.init(jax.random.key(0), spec.image_shape))
  for train in (False, True):
    logits, _ = jax.eval_shape(
        lambda p, s, x, train=train: model.apply(p, s, x, train=train, key=jax.random.key(1)),
        params, state, images)
    chex.assert_shape(logits, (2, spec.num_classes))
  assert ('batch_stats' in state) == (model_name not in ('mlp', 'cnn', *TEXT_MODELS))


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


# The CIFAR models against the official AMP code (hiyouga/AMP-Regularizer models/*.py).

OFFICIAL_PARAMETER_COUNTS = {  # counted on the official PyTorch models
    ('preact_resnet18', 'cifar10'): 11_176_906, ('preact_resnet18', 'cifar100'): 11_223_076,
    ('vgg16', 'cifar10'): 33_646_666, ('vgg16', 'cifar100'): 34_015_396,
    ('wrn28_10', 'cifar10'): 36_479_194, ('wrn28_10', 'cifar100'): 36_536_884,
}


def _cifar_module(model_name, dataset='cifar10'):
  import ml_collections
  spec = data.SPECS[dataset]
  return build_model(ml_collections.ConfigDict(MODEL_SECTIONS[model_name]), spec).module, spec


def _numpy_variables(module, *args, **kwargs):
  """`module`'s variables with every parameter ~ N(0, 0.5²) from numpy (no JAX random sampler to
  compile) and batch-norm statistics at their initial values (mean 0, var 1)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(np.float32),
                        shapes['params'])
  stats = jax.tree_util.tree_map_with_path(
      lambda path, s: np.full(s.shape, float(path[-1].key == 'var'), np.float32),
      shapes.get('batch_stats', {}))
  return {'params': params, **({'batch_stats': stats} if stats else {})}


@pytest.mark.parametrize('model_name,dataset', sorted(OFFICIAL_PARAMETER_COUNTS))
def test_parameter_count_equals_the_official_model(model_name, dataset):
  module, spec = _cifar_module(model_name, dataset)
  params = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *spec.image_shape)),
                                              train=False))['params']
  assert sum(leaf.size for leaf in jax.tree.leaves(params)) == OFFICIAL_PARAMETER_COUNTS[
      model_name, dataset]


def _block(**fields):
  return preact_resnet.PreActBlock(
      width=3, stride=1, norm=functools.partial(BatchNorm, use_running_average=True, epsilon=1e-5),
      **fields)


@pytest.mark.parametrize('shortcut_input', ['preactivated', 'input'])
def test_preact_block_identity_shortcut_adds_the_chosen_tensor(shortcut_input):
  block = _block(shortcut_input=shortcut_input)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 3)), jnp.float32)
  variables = _numpy_variables(block, x, train=False)
  full = block.apply(variables, x, train=False)
  # Zero the residual branch's last conv: the block then returns its shortcut alone.
  params = dict(variables['params'])
  params['conv2'] = jax.tree.map(np.zeros_like, params['conv2'])
  out = block.apply({**variables, 'params': params}, x, train=False)
  bn1 = params['bn1']  # eval mode at the initial statistics (mean 0, var 1)
  preactivated = jax.nn.relu(x / np.sqrt(1 + 1e-5) * bn1['scale'] + bn1['bias'])
  expected = preactivated if shortcut_input == 'preactivated' else x
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
  assert not np.allclose(preactivated, x, atol=1e-2)  # the two kinds differ on this x
  assert not np.allclose(full, out, atol=1e-2)  # and zeroing the branch changed the output


def test_preact_block_rejects_an_unknown_shortcut_input():
  message = "shortcut_input='raw': must be one of 'preactivated', 'input'"
  with pytest.raises(ValueError, match=message):
    _block(shortcut_input='raw').init(jax.random.key(0), jnp.zeros((1, 4, 4, 3)), train=False)


def test_preact_block_dropout_only_in_training():
  block = _block(dropout_rate=0.5)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, 4, 3)), jnp.float32)
  variables = _numpy_variables(block, x, train=False)
  eval_out = block.apply(variables, x, train=False)
  train_a, train_b = (block.apply(variables, x, train=True, rngs={'dropout': jax.random.key(k)})
                      for k in (2, 3))
  assert not np.allclose(train_a, train_b)
  assert not np.allclose(train_a, eval_out)


def _conv_calls(module, images, fn):
  """[(conv, fn(conv, conv input, conv output))] for every nn.Conv that `module` applies to
  `images` (eval mode, numpy parameters, one jitted call)."""
  convs = []

  def run(variables, images):
    results = []

    def record(next_fun, args, kwargs, context):
      out = next_fun(*args, **kwargs)
      if isinstance(context.module, nn.Conv) and context.method_name == '__call__':
        convs.append(context.module)
        results.append(fn(context.module, args[0], out))
      return out

    with nn.intercept_methods(record):
      module.apply(variables, images, train=False)
    return results
  return list(zip(convs, jax.jit(run)(_numpy_variables(module, images, train=False), images)))


@pytest.mark.parametrize('module', [
    preact_resnet.PreActResNet18(stage_sizes=(1, 1), widths=(4, 8)),
    WideResNet(depth=10, widen_factor=1)], ids=['preact_resnet', 'wide_resnet'])
def test_every_conv_samples_the_grid_of_pytorch_padding(module):
  """PyTorch's padding = k // 2 on each side; 'SAME' pads a stride-2 3×3 conv by (0, 1) on 8×8."""

  def by_hand(conv, x, out):
    params = conv.variables['params']
    pad = conv.kernel_size[0] // 2
    return out, *(jax.lax.conv_general_dilated(x, params['kernel'], conv.strides, padding,
                                               dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
                  + params.get('bias', 0.0) for padding in (((pad, pad), (pad, pad)), 'SAME'))

  images = jnp.asarray(np.random.default_rng(1).uniform(size=(1, 8, 8, 3)), jnp.float32)
  stride2_3x3 = 0
  for conv, (out, pytorch_grid, same_grid) in _conv_calls(module, images, by_hand):
    np.testing.assert_allclose(out, pytorch_grid, rtol=1e-5, atol=1e-5)
    if conv.strides == (2, 2) and conv.kernel_size == (3, 3):
      stride2_3x3 += 1
      assert not np.allclose(out, same_grid, atol=1e-2)
  assert stride2_3x3 == (1 if isinstance(module, preact_resnet.PreActResNet18) else 2)


def _layers(module, image_shape):
  """Every nn.Conv / nn.Dense of `module` with its kernel shape, traced without allocating."""
  layers = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, (nn.Conv, nn.Dense)) and context.method_name == '__call__':
      layers.append((context.module, context.module.variables['params']['kernel'].shape))
    return out

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, *image_shape)),
                                       train=False))
  return layers


@pytest.mark.parametrize('model_name', ['preact_resnet18', 'vgg16', 'wrn28_10'])
def test_initial_weights_follow_the_official_code(model_name):
  """Conv kernels kaiming_normal fan_out N(0, 2 / (k·k·out)), untruncated; conv biases and Linear
  kernels PyTorch's default U(±1/√fan_in) (std 1/√(3 fan_in)); Linear biases 0. The full-size
  model's own initialisers are drawn once per distinct layer of at most 10^6 weights."""
  module, spec = _cifar_module(model_name)
  layers = {}
  for layer, shape in _layers(module, spec.image_shape):
    if np.prod(shape) <= 1_000_000:
      layers.setdefault((type(layer).__name__, shape, layer.use_bias), layer)

  def draw():
    # 'rbg' keys: the same distributions, far less to compile than threefry.
    keys = jax.random.split(jax.random.key(0, impl='rbg'), (len(layers), 2))
    return [(layer.kernel_init(k[0], shape, jnp.float32),
             layer.bias_init(k[1], shape[-1:], jnp.float32) if use_bias else None)
            for k, ((_, shape, use_bias), layer) in zip(keys, layers.items())]

  for ((kind, shape, _), layer), (kernel, bias) in zip(layers.items(), jax.jit(draw)()):
    kernel = np.asarray(kernel).ravel()
    bound = 1 / np.sqrt(np.prod(shape[:-1]))  # 1/√fan_in
    if kind == 'Conv':
      std = np.sqrt(2 / (np.prod(shape[:2]) * shape[-1]))
      # Relative standard error of a normal sample's std: 1/√(2N); allow 5 of them.
      assert abs(kernel.std() / std - 1) < 5 / np.sqrt(2 * kernel.size), (layer, kernel.std())
      if kernel.size >= 10_000:  # P(max |z| < 3) < 1e-11 for an untruncated normal
        assert np.abs(kernel).max() > 3 * std, layer
      uniform = [np.asarray(bias)] if bias is not None else []
    else:
      np.testing.assert_array_equal(bias, 0.0)
      uniform = [kernel]
    for values in uniform:
      assert np.abs(values).max() <= bound, layer
      # Uniform on ±bound: std bound/√3, relative standard error of the sample std 0.45/√N.
      tolerance = 5 * 0.45 / np.sqrt(values.size)
      assert abs(values.std() * np.sqrt(3) / bound - 1) < tolerance, (layer, values.std(), bound)
  assert {kind for kind, _, _ in layers} == {'Conv', 'Dense'}


@pytest.mark.parametrize('unbiased', [True, False])
def test_batch_norm_running_variance(unbiased):
  """Training normalises with the biased batch variance and, like PyTorch, updates the running
  variance with the unbiased one (n / (n - 1)); `unbiased_running_variance=False` is Flax's."""
  layer = BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5,
                    unbiased_running_variance=unbiased)
  x = jnp.asarray(1.0 + 3.0 * np.random.default_rng(0).normal(size=(2, 3, 3, 4)), jnp.float32)
  variables = _numpy_variables(layer, x)
  variables['params'] = {'scale': np.ones(4, np.float32), 'bias': np.zeros(4, np.float32)}
  y, state = layer.apply(variables, x, mutable=['batch_stats'])
  flat = np.asarray(x).reshape(-1, 4)  # n = 18 values per feature
  np.testing.assert_allclose(state['batch_stats']['var'],
                             0.9 + 0.1 * flat.var(axis=0, ddof=1 if unbiased else 0), rtol=1e-5)
  np.testing.assert_allclose(state['batch_stats']['mean'], 0.1 * flat.mean(axis=0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(y.reshape(-1, 4), (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('fields, message', [
    (dict(dropout_rate=1.5), r'^CNN\(dropout_rate=1\.5\): must be a number in \[0, 1\)$'),
    (dict(dropout_rate=-0.5), r'^CNN\(dropout_rate=-0\.5\): must be a number in \[0, 1\)$'),
    (dict(dropout_sites=('nope',)), r"^CNN: no site 'nope'; dropout sites features, classifier, "),
    (dict(std=(0.0,)), r'^CNN\(std=\(0\.0,\)\): every value must be a finite number > 0$'),
    (dict(num_classes=0), r'^CNN\(num_classes=0\): must be an int >= 1$'),
    (dict(mean=(0.5, 0.5), std=(0.5,)), r'^CNN\(mean=\(0\.5, 0\.5\), std=\(0\.5,\)\): must be '),
])
def test_a_library_model_refuses_meaningless_fields(fields, message):
  """Built directly from Flax (not from a config, which is validated first)."""
  from robust_jax.models.cnn import CNN
  with pytest.raises(ValueError, match=message):
    CNN(**fields).init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)), train=False)


def test_a_model_normalising_three_channels_refuses_one_channel_images():
  from robust_jax.models.cnn import CNN
  with pytest.raises(ValueError, match=r'^images\.shape=\(2, 28, 28, 1\): CNN normalises 3 '):
    CNN(mean=(0.5,) * 3, std=(0.5,) * 3).init(jax.random.key(0), jnp.zeros((2, 28, 28, 1)),
                                              train=False)
