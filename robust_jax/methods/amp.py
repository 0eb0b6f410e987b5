"""AMP: adversarial model perturbation (Zheng, Zhang & Mao, CVPR 2021, arXiv 2010.04925).

    min_θ  max_{||Δ|| ≤ ε}  L(θ + Δ)                                     (papers.md 1.1)

Algorithm 1: Δ ← 0; N times: Δ ← Π_ε(Δ + ζ ∇_Δ L(θ + Δ)); then descend with ∇_θ L(θ + Δ).
`ball`: 'per_tensor' projects every parameter tensor onto its own ε-ball, as the official code does
(default; papers.md 1.2, item 1); 'global' uses one ball over all parameters, the paper's formula.
All trainable parameters are perturbed (batch-norm scales and biases too). `inner_grad_clip` clips
the gradient of every inner step by global norm (the official code clips at 50 inside its closure);
the outer clip is `config.optimizer.grad_clip_norm`. `update_bn_on_inner_passes`: the official code
runs every pass in training mode, so batch-norm running statistics are updated by the inner passes
as well (True); False keeps only the outer pass's update. The loss logged is L(θ + Δ).
The inner loop is `robust_jax.kernels.inner_loop` (a `fori_loop`, unrolled on CPU); the outer gradient
comes from the train step differentiating L(θ + stop_gradient(Δ)). Cost: N + 1 forward-backward
passes.

Two layers. `perturbation` and `project` are pure functions of any `loss_fn(params) -> loss` (no
config, no model class); use them from any JAX code:

    delta = amp.perturbation(loss_fn, params, epsilon=0.5, inner_lr=1.0, inner_steps=1).delta
    grads = jax.grad(loss_fn)(optax.apply_updates(params, delta))     # ∇_θ L(θ + Δ)

`amp(config, loss_fn)` is the adapter the `weight_perturbation` config section builds.
"""
from __future__ import annotations

import typing
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from robust_jax import arguments
from robust_jax.config import schema as cs
from robust_jax.kernels.inner_loop import inner_loop
from robust_jax.methods.loss_calls import with_aux_and_state
from robust_jax.objectives import LossFn, WEIGHT_PERTURBATIONS, require_float32_weights

__all__ = ['BALLS', 'DEFAULTS', 'Perturbation', 'SCHEMA', 'amp', 'perturbation', 'project']

BALLS = ('per_tensor', 'global')
SCHEMA: cs.Schema = {
    'epsilon': cs.positive_real(note="ε = 0 leaves the weights unperturbed: use "
                                "weight_perturbation 'none'"),
    'inner_lr': cs.positive_real(note="ζ = 0 never moves the perturbation from 0: use "
                                 "weight_perturbation 'none'"),  # ζ
    'inner_steps': cs.integer(1),  # N
    'ball': cs.one_of(*BALLS),
    'inner_grad_clip': cs.real(0.0),  # 0 = no clipping
    'update_bn_on_inner_passes': cs.boolean(),
}
DEFAULTS = dict(epsilon=0.1, inner_lr=1.0, inner_steps=1, ball='per_tensor', inner_grad_clip=0.0,
                update_bn_on_inner_passes=True)  # configs/amp.py:fashion_mnist


# typing.Any, not Any: pdoc resolves a NamedTuple's generated __init__ annotations by module
# name, and `Any` alone names none.
class Perturbation(typing.NamedTuple):
  """What `perturbation` returns.

  delta: Δ, a pytree like params with ||Δ|| ≤ ε (per tensor or over the tree); a constant.
  norm: ||Δ||₂ over the whole pytree (the last projection's), a scalar.
  state: the last inner pass's new state when `state` was given, else None.
  """

  delta: typing.Any
  norm: jax.Array
  state: typing.Any


def project(delta, epsilon: float, ball: str):
  """(Π_ε(Δ), ||Π_ε(Δ)||₂ over the whole pytree), the projection of AMP's Algorithm 1 (Zheng et
  al. 2021):

      per_tensor:  Δ_i ← Δ_i · min(1, ε / (||Δ_i||₂ + 1e-12))   for every tensor i (official code)
      global:      Δ   ← Δ   · min(1, ε / (||Δ||₂ + 1e-12))     over the whole pytree (the paper)

  delta: any non-empty pytree of float arrays; epsilon: ε ≥ 0 (may be traced); ball: 'per_tensor'
  or 'global'. The 1e-12 is the official code's. The returned norm reuses the norms the projection
  computes (no extra pass over the parameters).
  """
  arguments.check_choice('ball', ball, BALLS)
  arguments.check_number('epsilon', epsilon, 0.0)
  arguments.check_float_tree('delta', delta)
  return _project(delta, epsilon, ball)


def _project(delta, epsilon, ball):
  scale = lambda norm: jnp.minimum(1.0, epsilon / (norm + 1e-12))
  if ball == 'global':
    norm = optax.tree.norm(delta)
    return jax.tree.map(lambda d: d * scale(norm), delta), norm * scale(norm)
  norms = jax.tree.map(jnp.linalg.norm, delta)
  scales = jax.tree.map(scale, norms)
  return (jax.tree.map(jnp.multiply, delta, scales),
          optax.tree.norm(jax.tree.map(jnp.multiply, norms, scales)))


def perturbation(loss_fn: Callable[..., typing.Any], params, *, epsilon: float,
                 inner_lr: float, inner_steps: int, ball: str = 'per_tensor',
                 inner_grad_clip: float = 0.0, has_aux: bool = False,
                 key: jax.Array | None = None, state: typing.Any = None) -> Perturbation:
  """AMP's inner maximisation (Zheng et al. 2021, Algorithm 1): N projected gradient-ascent steps
  on the weights from Δ = 0,

      Δ ← Π_ε(Δ + ζ · clip(∇_Δ L(θ + Δ)))      N = inner_steps times, ζ = inner_lr,

  with Π_ε the `project` of `ball` and clip the global-norm clip at `inner_grad_clip` (0 = none).
  AMP then descends on L(θ + Δ): `jax.grad(loss_fn)(optax.apply_updates(params, delta))`.

  loss_fn: L, called as `loss_fn(params)`, or `loss_fn(params, key_n)` when `key` is given (inner
    pass n gets key_n = fold_in(key, n), e.g. for dropout); returns a scalar, or as described in
    `robust_jax.methods.loss_calls` with `has_aux` (aux unused) and `state` (threaded).
  params: θ, any pytree of float arrays; no gradient flows through Δ (it is computed on
    stop_gradient(θ) and returned through stop_gradient).
  epsilon, inner_lr: ε ≥ 0 and ζ ≥ 0 (Python numbers or scalars, may be traced); inner_steps: a
    Python int N ≥ 1; inner_grad_clip: a Python number ≥ 0; has_aux: True or False; key: None
    or one PRNG key.
  Returns `Perturbation(delta, norm, state)`. Cost: N forward-backward passes.
  """
  arguments.check_callable('loss_fn', loss_fn, 'a function params -> loss')
  arguments.check_choice('ball', ball, BALLS)
  inner_steps = arguments.check_count('inner_steps', inner_steps)
  arguments.check_number('epsilon', epsilon, 0.0)
  arguments.check_number('inner_lr', inner_lr, 0.0)
  arguments.check_number('inner_grad_clip', inner_grad_clip, 0.0, static=True)
  arguments.check_flag('has_aux', has_aux)
  if key is not None:
    arguments.check_key(key)
  arguments.check_float_tree('params', params)
  gradient = jax.grad(with_aux_and_state(loss_fn, has_aux=has_aux, with_state=state is not None),
                      has_aux=True)
  frozen = jax.lax.stop_gradient(params)

  def inner_step(step, carry):
    delta, _, state = carry
    pass_key = () if key is None else (jax.random.fold_in(key, step),)
    grads, (_, state) = gradient(jax.tree.map(jnp.add, frozen, delta), *pass_key, state=state)
    if inner_grad_clip > 0:
      grads = optax.clip_by_global_norm(inner_grad_clip).update(grads, None)[0]
    delta, delta_norm = _project(jax.tree.map(lambda d, g: d + inner_lr * g, delta, grads),
                                 epsilon, ball)
    return delta, delta_norm, state

  zeros = jax.tree.map(jnp.zeros_like, frozen)
  delta, norm, state = inner_loop(inner_steps, inner_step, (zeros, jnp.zeros(()), state))
  return Perturbation(jax.lax.stop_gradient(delta), norm, state)


def _check(config):
  require_float32_weights(config, "AMP (config.weight_perturbation.name='amp')")


@WEIGHT_PERTURBATIONS.register('amp', SCHEMA, check=_check, defaults=DEFAULTS,
                               sweepable=('epsilon', 'inner_lr'))
def amp(config, loss_fn: LossFn) -> LossFn:
  """Adapter: the objective L(θ + Δ) with Δ = `perturbation` of `loss_fn` (a robust_jax LossFn).

  config: the `weight_perturbation` section (SCHEMA). Key contract: the objective key splits into
  (inner key, outer key); inner pass n uses fold_in(inner key, n). The model state is threaded
  through the inner passes when `update_bn_on_inner_passes`. Logs ||Δ||₂ as 'amp_delta_norm'.
  """
  def amp_loss_fn(params, model_state, batch, key):
    inner_key, outer_key = jax.random.split(key)

    def inner_loss(perturbed, pass_key, *, state):
      loss, aux = loss_fn(perturbed, state, batch, pass_key)
      return loss, aux.model_state if config.update_bn_on_inner_passes else state

    delta, delta_norm, model_state = perturbation(
        inner_loss, params, epsilon=config.epsilon, inner_lr=config.inner_lr,
        inner_steps=config.inner_steps, ball=config.ball, inner_grad_clip=config.inner_grad_clip,
        key=inner_key, state=model_state)
    loss, aux = loss_fn(jax.tree.map(jnp.add, params, delta), model_state, batch, outer_key)
    return loss, aux.replace(metrics={**aux.metrics, 'amp_delta_norm': delta_norm})
  return amp_loss_fn
