"""The single compiled, data-parallel train step shared by every method.

    step(state, batch) -> (state, metrics)

One `jax.jit` over the mesh: the batch is sharded on the `data` axis, the state replicated and
donated. `make_replica_train_step` steps R replicas (`robust_jax.training.replicas`) in one jit. Randomness is `fold_in(step_key, step)`, split into augmentation and objective keys; inside
them every example's randomness is keyed by its index in the global batch (`random_utils`). The
objective is a `LossFn` (`robust_jax.objectives`); methods never add branches here.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from robust_jax import sharding
from robust_jax.objectives import LossFn
from robust_jax.training import replicas
from robust_jax.training.state import TrainState

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]  # (uint8 images, key) -> float images

__all__ = ['AugmentFn', 'make_replica_train_step', 'make_train_step', 'step_function']


def step_function(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                  augment_fn: AugmentFn, log_grad_norm: bool = False):
  """The unjitted `step(state, batch, step_key) -> (state, metrics)`; `batch` = {'image': uint8
  (B,H,W,C), 'label': (B,)}.

  metrics: {'loss', 'accuracy' (on the inputs the loss trained on), **aux metrics}, plus
  'grad_norm' (global L2 norm of the gradient) if `log_grad_norm`.
  """

  def step(state: TrainState, batch, step_key: jax.Array):
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

  return step


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    augment_fn: AugmentFn, step_key: jax.Array, mesh: Mesh,
                    log_grad_norm: bool = False):
  """Returns the jitted `step(state, batch)` of `step_function` with `step_key`."""
  step = step_function(loss_fn, optimizer, augment_fn, log_grad_norm)
  replicated = sharding.replicated(mesh)
  return jax.jit(lambda state, batch: step(state, batch, step_key),
                 in_shardings=(replicated, sharding.batch_sharded(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0)


def make_replica_train_step(build_step: Callable[[Any], Callable], configs: list,
                            sweep: tuple[str, ...], step_keys: jax.Array, mesh: Mesh,
                            batching: str):
  """Returns `step(states, batches)` of R replicas (`robust_jax.training.replicas`): every leaf
  of `states` and `batches` has a leading replica axis R = len(configs), and replica r steps with
  `build_step(configs[r])` (-> `step_function(...)` of that config) and `step_keys[r]`.

  batching 'sequential': one jitted step per sweep point, each built from its concrete config and
  shared by the point's seeds, called replica after replica (R programs of separate runs, P
  compilations for P points); 'unroll': the R steps side by side in one jit; 'vmap': one step
  vmapped over R in one jit, built from `configs[0]` with its `sweep` keys traced.
  """
  replicated, batched = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  point_of = lambda config: tuple(config[k.split('.')[0]][k.split('.')[1]] for k in sweep)
  if batching == 'sequential':
    compiled = {}
    for config in configs:
      if point_of(config) not in compiled:
        compiled[point_of(config)] = jax.jit(build_step(config),
                                             in_shardings=(replicated, batched, None),
                                             out_shardings=(replicated, replicated),
                                             donate_argnums=0)
    steps = [compiled[point_of(config)] for config in configs]
    count = len(configs)
    unstack = jax.jit(lambda tree: [replicas.take(tree, r) for r in range(count)],
                      out_shardings=replicated)
    unstack_batches = jax.jit(lambda tree: [replicas.take(tree, r) for r in range(count)],
                              out_shardings=batched)
    stack = jax.jit(replicas.stack, out_shardings=replicated)

    def sequential(states, batches):
      return stack([step(state, batch, step_keys[r]) for r, (step, state, batch)
                    in enumerate(zip(steps, unstack(states), unstack_batches(batches)))])
    return sequential
  if batching == 'unroll':
    steps = [build_step(config) for config in configs]

    def replica_step(states, batches):
      outputs = [step(replicas.take(states, r), replicas.take(batches, r), step_keys[r])
                 for r, step in enumerate(steps)]
      return replicas.stack(outputs)
  else:
    values = {key: jnp.array([float(point_of(config)[sweep.index(key)]) for config in configs],
                             jnp.float32) for key in sweep}

    def one_replica(state, batch, step_key, replica_values):
      step = build_step(replicas.traced_config(configs[0], replica_values))
      return step(state, batch, step_key)

    def replica_step(states, batches):
      return jax.vmap(one_replica)(states, batches, step_keys, values)
  return jax.jit(replica_step, in_shardings=(replicated, sharding.replica_batch_sharded(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=0)
