"""The single compiled, data-parallel train step shared by every method.

    step(state, batch) -> (state, metrics)

One `jax.jit` over the mesh: the batch is sharded on the `data` axis, the state replicated and
donated. Randomness is `fold_in(step_key, step)`, split into augmentation and objective keys; inside
them every example's randomness is keyed by its index in the global batch (`random_utils`). The
objective is a `LossFn` (`robust_jax.objectives`); methods never add branches here.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from robust_jax import sharding
from robust_jax.objectives import LossFn
from robust_jax.training.state import TrainState

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]  # (uint8 images, key) -> float images

__all__ = ['AugmentFn', 'make_train_step']


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    augment_fn: AugmentFn, step_key: jax.Array, mesh: Mesh,
                    log_grad_norm: bool = False):
  """Returns the jitted `step(state, batch)`; `batch` = {'image': uint8 (B,H,W,C), 'label': (B,)}.

  metrics: {'loss', 'accuracy' (on the inputs the loss trained on), **aux metrics}, plus
  'grad_norm' (global L2 norm of the gradient) if `log_grad_norm`.
  """

  def step(state: TrainState, batch):
    key = jax.random.fold_in(step_key, state.step)
    augment_key, loss_key = jax.random.split(key)
    inputs = {'image': augment_fn(batch['image'], augment_key), 'label': batch['label']}
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.model_state, inputs, loss_key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    new_state = state.replace(step=state.step + 1,
                              params=optax.apply_updates(state.params, updates),
                              model_state=aux.model_state, opt_state=opt_state)
    metrics = {'loss': loss,
               'accuracy': jnp.mean(jnp.argmax(aux.logits, -1) == batch['label']), **aux.metrics}
    if log_grad_norm:
      metrics['grad_norm'] = optax.tree.norm(grads)
    return new_state, metrics

  replicated = sharding.replicated(mesh)
  return jax.jit(step, in_shardings=(replicated, sharding.batch_sharded(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0)
