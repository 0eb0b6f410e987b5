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
The inner loop is `robust_jax.inner_loop` (a `fori_loop`, unrolled on CPU); the outer gradient
comes from the train step differentiating L(θ + stop_gradient(Δ)). Cost: N + 1 forward-backward
passes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from robust_jax import config_schema as cs
from robust_jax.inner_loop import inner_loop
from robust_jax.objectives import WEIGHT_PERTURBATIONS

SCHEMA: cs.Schema = {
    'epsilon': cs.real(0.0),
    'inner_lr': cs.real(0.0),  # ζ
    'inner_steps': cs.integer(1),  # N
    'ball': cs.one_of('per_tensor', 'global'),
    'inner_grad_clip': cs.real(0.0),  # 0 = no clipping
    'update_bn_on_inner_passes': cs.boolean(),
}
DEFAULTS = dict(epsilon=0.1, inner_lr=1.0, inner_steps=1, ball='per_tensor', inner_grad_clip=0.0,
                update_bn_on_inner_passes=True)  # configs/amp.py:fashion_mnist


def project(delta, epsilon: float, ball: str):
  """(Π_ε(Δ), ‖Π_ε(Δ)‖₂ over the whole pytree): scales each tensor (per_tensor) or the whole
  pytree (global) into the ε-ball.

  Uses ε / (||Δ|| + 1e-12) like the official code. The returned norm reuses the norms the
  projection computes, so logging it costs no extra pass over the parameters.
  """
  scale = lambda norm: jnp.minimum(1.0, epsilon / (norm + 1e-12))
  if ball == 'global':
    norm = optax.tree.norm(delta)
    return jax.tree.map(lambda d: d * scale(norm), delta), norm * scale(norm)
  norms = jax.tree.map(jnp.linalg.norm, delta)
  scales = jax.tree.map(scale, norms)
  return (jax.tree.map(jnp.multiply, delta, scales),
          optax.tree.norm(jax.tree.map(jnp.multiply, norms, scales)))


def ascend(loss_fn, params, model_state, batch, key, config):
  """(Δ, ‖Δ‖₂, model state) after N projected ascent steps of size ζ from Δ = 0."""
  frozen = jax.lax.stop_gradient(params)
  gradient = jax.grad(loss_fn, has_aux=True)

  def inner_step(step, carry):
    delta, _, state = carry
    grads, aux = gradient(jax.tree.map(jnp.add, frozen, delta), state, batch,
                          jax.random.fold_in(key, step))
    if config.inner_grad_clip > 0:
      grads = optax.clip_by_global_norm(config.inner_grad_clip).update(grads, None)[0]
    delta, delta_norm = project(jax.tree.map(lambda d, g: d + config.inner_lr * g, delta, grads),
                                config.epsilon, config.ball)
    return delta, delta_norm, aux.model_state if config.update_bn_on_inner_passes else state

  zeros = jax.tree.map(jnp.zeros_like, frozen)
  return inner_loop(config.inner_steps, inner_step, (zeros, jnp.zeros(()), model_state))


@WEIGHT_PERTURBATIONS.register('amp', SCHEMA, defaults=DEFAULTS)
def amp(config, loss_fn):
  def amp_loss_fn(params, model_state, batch, key):
    inner_key, outer_key = jax.random.split(key)
    delta, delta_norm, model_state = ascend(loss_fn, params, model_state, batch, inner_key,
                                            config)
    delta = jax.lax.stop_gradient(delta)
    loss, aux = loss_fn(jax.tree.map(jnp.add, params, delta), model_state, batch, outer_key)
    return loss, aux.replace(metrics={**aux.metrics, 'amp_delta_norm': delta_norm})
  return amp_loss_fn
