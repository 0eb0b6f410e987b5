"""AMP (robust_jax/methods/amp.py) against closed forms on a quadratic: the first inner step in
each ball, two inner steps (fori_loop and unrolled), and optax's SAM as its one-step case."""
import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from robust_jax.kernels import inner_loop
from robust_jax.methods import amp
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


@pytest.mark.parametrize('ball', ['per_tensor', 'global'])
def test_project_keeps_a_perturbation_far_inside_the_ball_as_it_is(ball):
  """min(1, ε / (||Δ|| + 1e-12)) is 1 for ||Δ|| ≤ ε, down to norms below the guard itself (here
  5e-13): the projection leaves Δ alone, it does not flip or blow it up."""
  delta = {'a': jnp.full((4,), 2.5e-13, jnp.float32), 'b': jnp.zeros((2,), jnp.float32)}
  projected, norm = amp.project(delta, 0.1, ball)
  np.testing.assert_array_equal(projected['a'], delta['a'])
  np.testing.assert_array_equal(projected['b'], delta['b'])
  assert float(norm) == pytest.approx(5e-13, rel=1e-5)
