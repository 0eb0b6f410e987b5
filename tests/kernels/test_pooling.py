"""`pooling.max_pool` against `flax.linen.max_pool`: bitwise-equal values and gradients (ties,
padding, odd sizes, NaN, bf16, jit, vmap, 8-device batch sharding), the tie rule on hand-made
windows, and whole CNN / VGG-16 models with either pool."""
import itertools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import data, sharding
from robust_jax.config import defaults as config_defaults
from robust_jax.kernels import pooling
from robust_jax.models import build_model
from tests import helpers


def _inputs(kind: str, shape, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if kind == 'normal':
    return rng.normal(size=shape)
  if kind == 'integers':  # ties in most windows
    return rng.integers(-1, 2, shape).astype(np.float64)
  if kind == 'all_equal':
    return np.full(shape, 0.25)
  if kind == 'relu_zeros':
    return np.maximum(rng.normal(size=shape), 0.0)
  x = rng.integers(-1, 2, shape).astype(np.float64)  # 'nonfinite'
  x[rng.random(shape) < 0.2] = np.nan
  x[rng.random(shape) < 0.1] = -np.inf
  return x


def _value_and_vjp(pool, x, cotangent):
  y, vjp = jax.vjp(pool, x)
  return y, vjp(cotangent)[0]


def _assert_bitwise_equal(a, b):
  assert a.dtype == b.dtype and a.shape == b.shape
  np.testing.assert_array_equal(np.asarray(a, np.float32).view(np.uint32),
                                np.asarray(b, np.float32).view(np.uint32))


KINDS = ('normal', 'integers', 'all_equal', 'relu_zeros', 'nonfinite')


@pytest.mark.parametrize('shape,window,padding', [
    ((8, 8, 3), (2, 2), 'VALID'), ((7, 9, 3), (2, 2), 'VALID'), ((7, 9, 3), (2, 2), 'SAME'),
    ((8, 6, 3), (2, 2), 'SAME'), ((7, 8, 2), (3, 3), 'SAME'), ((7, 8, 2), (2, 3), ((1, 0), (0, 2))),
])
def test_values_and_gradients_equal_flax_bitwise(shape, window, padding):
  x_kinds = np.stack([_inputs(kind, shape) for kind in KINDS])  # (kinds, *shape): one batch
  for dtype in (jnp.float32, jnp.bfloat16):
    x = jnp.asarray(x_kinds, dtype)
    expected_y = nn.max_pool(x, window, window, padding)
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=expected_y.shape), dtype)
    expected = jax.jit(lambda x, ct: _value_and_vjp(
        lambda x: nn.max_pool(x, window, window, padding), x, ct))(x, cotangent)
    actual = jax.jit(lambda x, ct: _value_and_vjp(
        lambda x: pooling.max_pool(x, window, window, padding), x, ct))(x, cotangent)
    for a, b in zip(actual, expected):
      _assert_bitwise_equal(a, b)


def test_tie_rule_first_maximum_in_row_major_order():
  patterns = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)  # (16, 4)
  x = jnp.asarray(patterns.reshape(16, 2, 2, 1))
  gradient = jax.grad(lambda x: pooling.max_pool(x, (2, 2), (2, 2)).sum())(x)
  expected = np.eye(4, dtype=np.float32)[np.argmax(patterns, axis=1)]  # argmax: first maximum
  np.testing.assert_array_equal(np.asarray(gradient).reshape(16, 4), expected)
  flax_gradient = jax.grad(lambda x: nn.max_pool(x, (2, 2), (2, 2)).sum())(x)
  np.testing.assert_array_equal(gradient, flax_gradient)


@pytest.mark.parametrize('window,selected', [
    ((np.nan, 1, 2, 3), 3),  # a NaN is replaced by the element after it
    ((3, 2, 1, np.nan), 3),  # ... and kept when it comes last
    ((np.nan, np.nan, 1, 0), 2),
    ((1, np.nan, np.nan, 0), 3),
])
def test_tie_rule_with_nan(window, selected):
  x = jnp.asarray(np.array(window, np.float32).reshape(1, 2, 2, 1))
  gradient = jax.grad(lambda x: pooling.max_pool(x, (2, 2), (2, 2)).sum())(x)
  np.testing.assert_array_equal(np.asarray(gradient).ravel(), np.eye(4)[selected])
  assert np.isnan(pooling.max_pool(x, (2, 2), (2, 2))).all()


def test_padding_gets_the_gradient_after_a_trailing_nan_like_flax():
  x = jnp.asarray(np.array([1.0, 2.0, np.nan], np.float32).reshape(1, 1, 3, 1))
  for pool in (pooling.max_pool, nn.max_pool):
    gradient = jax.grad(lambda x, pool=pool: jnp.nansum(pool(x, (2, 2), (2, 2), 'SAME')))(x)
    np.testing.assert_array_equal(np.asarray(gradient).ravel(), [0.0, 1.0, 0.0])


def test_forward_mode_is_the_transpose_of_reverse_mode():
  x = jnp.asarray(_inputs('integers', (2, 7, 5, 2)), jnp.float32)
  pool = lambda x: pooling.max_pool(x, (2, 2), (2, 2), 'SAME')
  forward, reverse = jax.jacfwd(pool)(x), jax.jacrev(pool)(x)
  np.testing.assert_array_equal(forward, reverse)
  assert forward.reshape(pool(x).size, x.size).sum(axis=1).max() == 1.0  # one element per window
  # Unpadded windows: flax's forward mode (select_and_gather_add) picks the same elements.
  x = jnp.asarray(_inputs('integers', (2, 6, 4, 3), seed=2), jnp.float32)
  tangent = jnp.asarray(np.random.default_rng(3).normal(size=x.shape), jnp.float32)
  np.testing.assert_array_equal(
      jax.jvp(lambda x: pooling.max_pool(x, (2, 2), (2, 2)), (x,), (tangent,))[1],
      jax.jvp(lambda x: nn.max_pool(x, (2, 2), (2, 2)), (x,), (tangent,))[1])


def test_gradient_has_no_scatter_and_overlapping_windows_fall_back_to_flax():
  x = jnp.asarray(_inputs('normal', (2, 7, 7, 3)), jnp.float32)
  fast = jax.jit(jax.grad(lambda x: pooling.max_pool(x, (2, 2), (2, 2), 'SAME').sum()))
  cpu_program = jax.export.export(fast, platforms=['cpu'])(x).mlir_module()  # CPU branch only
  cpu_ops = set(re.findall(r'stablehlo\.(\w+)', cpu_program))
  assert 'select' in cpu_ops and not cpu_ops & {'scatter', 'select_and_scatter', 'reduce_window'}
  overlapping = lambda x: pooling.max_pool(x, (3, 3), (2, 2)).sum()
  assert 'select_and_scatter_add' in str(jax.make_jaxpr(jax.grad(overlapping))(x))
  np.testing.assert_array_equal(jax.grad(overlapping)(x),
                                jax.grad(lambda x: nn.max_pool(x, (3, 3), (2, 2)).sum())(x))


def test_vmap_over_examples_equals_the_batched_call():
  """Inside `vmap` each example is (H, W, C): the input without a batch axis."""
  x = jnp.asarray(_inputs('integers', (4, 6, 7, 2)), jnp.float32)
  loss = lambda x: (pooling.max_pool(x, (2, 2), (2, 2), 'SAME') ** 2).sum()
  per_example = jax.vmap(jax.value_and_grad(loss))(x)
  np.testing.assert_array_equal(per_example[0].sum(), loss(x))
  np.testing.assert_array_equal(per_example[1], jax.grad(loss)(x))


@pytest.mark.parametrize('axis_type', ['Auto', 'Explicit'])  # robust_jax's mesh is Auto
def test_batch_sharded_over_eight_devices_equals_flax(eight_devices, axis_type):
  mesh = jax.make_mesh((8,), (sharding.DATA_AXIS,), devices=eight_devices,
                       axis_types=(getattr(jax.sharding.AxisType, axis_type),))
  x = jnp.asarray(_inputs('integers', (16, 7, 6, 3)), jnp.float32)
  loss = lambda pool: lambda x: (pool(x, (2, 2), (2, 2), 'SAME') ** 2).sum()
  step = jax.jit(jax.value_and_grad(loss(pooling.max_pool)),
                 in_shardings=sharding.batch_sharded(mesh),
                 out_shardings=(sharding.replicated(mesh), sharding.batch_sharded(mesh)))
  with jax.set_mesh(mesh):
    value, gradient = step(jax.device_put(x, sharding.batch_sharded(mesh)))
  expected_value, expected_gradient = jax.value_and_grad(loss(nn.max_pool))(x)
  np.testing.assert_array_equal(value, expected_value)
  np.testing.assert_array_equal(gradient, expected_gradient)
  assert gradient.sharding.spec[0] == sharding.DATA_AXIS


def test_bad_arguments_are_one_line_errors():
  x = jnp.zeros((2, 4, 4, 1))
  with pytest.raises(ValueError, match=r"padding=\(\(0, 1\),\): must be 'SAME', 'VALID' or 2 "):
    pooling.max_pool(x, (2, 2), (2, 2), ((0, 1),))
  with pytest.raises(ValueError, match=r'x.shape=\(4, 4\): must have 2 spatial axes and a feat'):
    pooling.max_pool(jnp.zeros((4, 4)), (2, 2), (2, 2))


def _model_with_pool(monkeypatch, model_section, pool, spec):
  """The model `model_section` names, built with `pool` in place of `pooling.max_pool`."""
  monkeypatch.setattr(pooling, 'max_pool', pool)
  return build_model(ml_collections.ConfigDict(model_section), spec)


def _tie_splitting_max_pool(x, window_shape, strides, padding='VALID'):
  """Plain reshape-and-max: jnp.max's gradient splits ties equally (what must NOT be used)."""
  del strides, padding
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def test_cnn_parameter_gradients_equal_flax_pool_bitwise(monkeypatch):
  spec = data.SPECS['fashion_mnist']
  section = config_defaults.cnn_model(widths=(4, 8), hidden_size=16, kernel_size=3)
  images, labels = helpers.quadrant_images(8, seed=0)
  images = images.astype(np.float32) / 255.0
  images[:, :, :10] = 0.5  # constant region: equal positive activations tie inside windows
  params, state = build_model(ml_collections.ConfigDict(section), spec).init(
      jax.random.key(0), spec.image_shape)
  fast_pool = pooling.max_pool

  def gradients(pool):
    model = _model_with_pool(monkeypatch, section, pool, spec)
    def loss(params):
      logits, _ = model.apply(params, state, jnp.asarray(images), train=False)
      return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1).mean()
    return jax.jit(jax.grad(loss))(params)

  expected = gradients(nn.max_pool)
  for a, b in zip(jax.tree.leaves(gradients(fast_pool)), jax.tree.leaves(expected)):
    _assert_bitwise_equal(a, b)
  # The model does have ties: splitting them equally gives different gradients.
  split = gradients(_tie_splitting_max_pool)
  assert any(not np.array_equal(a, b)
             for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(expected)))


def test_vgg16_output_unchanged(monkeypatch):
  spec = data.SPECS['fashion_mnist']  # 28×28: SAME pools 28 -> 14 -> 7 -> 4 (padded) -> 2 -> 1
  section = config_defaults.plain_model('vgg16')
  images = jnp.asarray(helpers.quadrant_images(2, seed=1)[0], jnp.float32) / 255.0
  model = build_model(ml_collections.ConfigDict(section), spec)
  shapes = jax.eval_shape(lambda key: model.init(key, spec.image_shape), jax.random.key(0))
  rng = np.random.default_rng(0)  # 33.6 M weights: numpy draws them ~20x faster than model.init
  variables = jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal(
      leaf.shape, np.float32) / np.sqrt(np.prod(leaf.shape[:-1]))), shapes)
  fast_pool = pooling.max_pool

  def logits(pool):
    model = _model_with_pool(monkeypatch, section, pool, spec)
    return jax.jit(lambda x: model.apply(*variables, x, train=True, key=jax.random.key(1))[0])(
        images)

  _assert_bitwise_equal(logits(fast_pool), logits(nn.max_pool))
