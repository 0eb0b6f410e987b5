"""`models.input_conv.conv`: XLA's convolution values and weight gradients, the patches form's
input gradient, and `lax.conv_general_dilated` itself wherever the patches form does not apply."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from robust_jax import data
from robust_jax.config import defaults as config_defaults
from robust_jax.kernels import input_conv
from robust_jax.models import build_model

CASES = [  # (input shape, kernel, padding)
    ((3, 9, 7, 1), (3, 3), 'SAME'),
    ((3, 9, 7, 3), (5, 3), 'VALID'),
    ((2, 8, 8, 4), (3, 3), ((2, 0), (1, 1))),
    ((3, 11, 2), (3,), 'SAME'),  # 1-D, channels last
]


def _pair(shape, kernel, padding, **conv_kwargs):
  """(flax Conv, the same with input_conv.conv, variables, input)."""
  keys = jax.random.split(jax.random.key(len(shape) + shape[-1]), 2)
  images = jax.random.normal(keys[0], shape)
  reference = nn.Conv(6, kernel, padding=padding, **conv_kwargs)
  ours = nn.Conv(6, kernel, padding=padding, conv_general_dilated=input_conv.conv, **conv_kwargs)
  return reference, ours, reference.init(keys[1], images), images


def _loss(module, variables, images):
  return jnp.sum(jnp.sin(module.apply(variables, images)))


@pytest.mark.parametrize('shape,kernel,padding', CASES)
def test_values_and_weight_gradients_are_xlas_bit_for_bit(shape, kernel, padding):
  reference, ours, variables, images = _pair(shape, kernel, padding)
  np.testing.assert_array_equal(ours.apply(variables, images), reference.apply(variables, images))
  jax.tree_util.tree_map(np.testing.assert_array_equal, jax.grad(_loss, 1)(ours, variables, images),
                         jax.grad(_loss, 1)(reference, variables, images))


@pytest.mark.parametrize('shape,kernel,padding', CASES)
def test_input_gradient_and_forward_mode_match_xla(shape, kernel, padding):
  reference, ours, variables, images = _pair(shape, kernel, padding)
  expected = jax.grad(_loss, 2)(reference, variables, images)
  got = jax.jit(jax.grad(_loss, 2), static_argnums=0)(ours, variables, images)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(expected).max()) > 0.1  # a gradient worth comparing
  tangent = jnp.cos(images)
  apply = lambda module: (lambda x: module.apply(variables, x))
  np.testing.assert_allclose(jax.jvp(apply(ours), (images,), (tangent,))[1],
                             jax.jvp(apply(reference), (images,), (tangent,))[1], rtol=1e-5,
                             atol=1e-5)


def test_input_gradient_under_vmap_and_in_bfloat16():
  reference, ours, variables, images = _pair((4, 6, 6, 1), (3, 3), 'SAME')
  per_example = lambda module: jax.vmap(
      lambda x: jax.grad(lambda x: _loss(module, variables, x[None]))(x))(images)
  np.testing.assert_allclose(per_example(ours), per_example(reference), rtol=1e-5, atol=1e-5)
  half = nn.Conv(6, (3, 3), dtype=jnp.bfloat16, conv_general_dilated=input_conv.conv)
  gradient = jax.grad(lambda x: jnp.sum(half.apply(variables, x).astype(jnp.float32)))(images)
  assert gradient.dtype == jnp.float32 and np.isfinite(np.asarray(gradient)).all()


@pytest.mark.parametrize('conv_kwargs,channels', [
    (dict(strides=(2, 2)), 1), (dict(kernel_dilation=(2, 2)), 1),
    (dict(feature_group_count=2), 2), ({}, input_conv.MAX_INPUT_CHANNELS + 1)])
def test_falls_back_to_xla_where_the_patches_form_does_not_apply(conv_kwargs, channels):
  reference, ours, variables, images = _pair((2, 8, 8, channels), (3, 3), 'SAME', **conv_kwargs)
  gradient = lambda module: jax.grad(_loss, 2)(module, variables, images)
  np.testing.assert_array_equal(gradient(ours), gradient(reference))  # the very same program
  jaxpr = jax.make_jaxpr(lambda x: jax.grad(_loss, 2)(ours, variables, x))(images)
  assert 'custom_jvp' not in str(jaxpr)


def test_only_the_cnns_first_layer_takes_the_patches_form():
  section = ml_collections.ConfigDict(config_defaults.cnn_model(widths=(8, 16), hidden_size=16))
  spec = data.SPECS['fashion_mnist']
  model = build_model(section, spec)
  params, state = model.init(jax.random.key(0), spec.image_shape)
  assert set(params) == {'Conv_0', 'Conv_1', 'Dense_0', 'Dense_1'}  # nn.Conv's parameters
  jaxpr = jax.make_jaxpr(lambda x: model.apply(params, state, x, train=False)[0])(
      jnp.ones((2, *spec.image_shape))).jaxpr
  # conv1 is a `lax.platform_dependent` choice (a cond) whose CPU branch is the custom_jvp (the
  # other conds are the max-pools').
  choices = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == 'cond'
             and 'conv_general_dilated' in str(eqn.params['branches'])]
  assert len(choices) == 1 and choices[0].invars[1].aval.shape == (2, 28, 28, 1)  # conv1, 1 channel
  branches = [str(branch) for branch in choices[0].params['branches']]
  assert sum('custom_jvp_call' in branch for branch in branches) == 1
  outside = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == 'conv_general_dilated']
  assert len(outside) == 1 and outside[0].invars[0].aval.shape[-1] == 8  # conv2: XLA's own
