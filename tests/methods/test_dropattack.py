"""DropAttack (robust_jax/methods/dropattack.py) against a hand computation on a tiny CNN (all-ones
and all-zeros masks), its config errors, and its weight ε default."""
import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from robust_jax import objectives
from robust_jax.config import validation
from robust_jax.config.schema import ConfigError
from robust_jax.methods import dropattack
from robust_jax.objectives import LossAux


def _ce_loss(model):
  return objectives.LOSSES.lookup('', 'cross_entropy').build(
      None, model, lambda labels: jax.nn.one_hot(labels, 10))


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


# ----------------------------------------------------------------------------- composition checks
def test_dropattack_input_attack_with_adversary_is_a_config_error():
  from configs import dropattack as dropattack_config
  from configs import fashion_mnist_adversarial
  config = dropattack_config.get_config('fashion_mnist')
  config.adversary = fashion_mnist_adversarial.get_config('pgd').adversary
  with pytest.raises(ConfigError, match="DropAttack's input attack needs gradients"):
    validation.validate_config(config)


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1
# (experiments/results/mutation/2026-11-27_survivors.md, where they were
# tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
def test_dropattack_weight_epsilon_is_absolute_unless_asked():
  """`gradient` without `weight_epsilon_relative` uses ε_W = weight_epsilon, not ε·||W||_F."""
  params = {'w': jnp.array([3.0, -2.0, 4.0])}
  inputs = jnp.ones((2, 3))

  def loss_fn(p, x, key):
    del key
    return jnp.mean(jnp.sin(x @ p['w']))

  common = dict(attack_probability=1.0, num_steps=1, input_epsilon=0.0, attack_input=False,
                weight_paths=('w',), weight_epsilon=0.3)
  key = jax.random.PRNGKey(0)
  default = dropattack.gradient(loss_fn, params, inputs, key, **common)
  absolute = dropattack.gradient(loss_fn, params, inputs, key, weight_epsilon_relative=False,
                                 **common)
  relative = dropattack.gradient(loss_fn, params, inputs, key, weight_epsilon_relative=True,
                                 **common)
  np.testing.assert_allclose(default.loss, absolute.loss, rtol=1e-6)
  assert abs(float(default.loss) - float(relative.loss)) > 1e-3


# ------------------------------------------------------------------------------- argument bounds
def test_gradient_takes_inputs_with_only_a_batch_axis_and_refuses_a_scalar():
  """inputs (B,) (one feature per example) is the smallest input with a batch axis."""
  def loss_fn(params, inputs, key):  # pylint: disable=unused-argument
    return jnp.sum((params['w'] * inputs - 1.0) ** 2)
  common = dict(attack_probability=1.0, num_steps=1, input_epsilon=0.1, attack_weights=False)
  params = {'w': jnp.float32(2.0)}
  result = dropattack.gradient(loss_fn, params, jnp.arange(4.0), jax.random.key(0), **common)
  assert result.clean_loss == pytest.approx(1 + 1 + 9 + 25)  # (2x - 1)² at x = 0, 1, 2, 3
  assert result.loss > result.clean_loss  # the input attack raised the loss
  with pytest.raises(TypeError, match='with a batch axis first'):
    dropattack.gradient(loss_fn, params, jnp.float32(1.0), jax.random.key(0), **common)


@pytest.mark.parametrize('input_norm', ['batch', 'per_example'])
def test_a_zero_gradient_leaves_its_input_or_tensor_unperturbed(input_norm):
  """A direction of norm 0 perturbs nothing (the code's `if n != 0 and not nan`), neither 0 / 0
  nor a step of another size: the loss is at its minimum in the inputs and in the tensor 'other',
  whose gradients are 0 there, so each attack term equals the clean loss."""
  def loss_fn(params, inputs, key):  # pylint: disable=unused-argument
    return (jnp.sum((params['w'] - 2.0) ** 2) + jnp.sum((inputs - 1.0) ** 2)
            + (params['other'] - 3.0) ** 2)
  params = {'w': jnp.float32(1.0), 'other': jnp.float32(3.0)}
  result = dropattack.gradient(
      loss_fn, params, jnp.ones((4, 3)), jax.random.key(0), attack_probability=1.0,
      num_steps=2, input_epsilon=0.5, input_norm=input_norm, weight_paths=('other',),
      weight_epsilon=0.5)
  assert float(result.clean_loss) == 1.0 and float(result.loss) == 3.0  # clean + 2 equal terms
  assert float(result.grads['w']) == -6.0 and float(result.grads['other']) == 0.0


def test_a_weights_only_attack_takes_integer_inputs():
  """The float-input check guards the input attack only: token ids pass with attack_input off."""
  def loss_fn(params, inputs, key):  # pylint: disable=unused-argument
    return jnp.sum((params['w'] * inputs.astype(jnp.float32) - 1.0) ** 2)
  result = dropattack.gradient(loss_fn, {'w': jnp.float32(2.0)}, jnp.arange(4), jax.random.key(0),
                               attack_probability=1.0, num_steps=1, input_epsilon=0.0,
                               attack_input=False, weight_paths=('w',), weight_epsilon=0.1)
  assert result.clean_loss == pytest.approx(1 + 1 + 9 + 25)
