"""How the pure method functions (`amp.perturbation`, `dropattack.gradient`) call a user's loss.

A method that evaluates the loss several times takes any JAX function `loss_fn` and two flags, as
`jax.grad` does:

    has_aux=False, state=None    loss_fn(*args)               -> loss
    has_aux=True,  state=None    loss_fn(*args)               -> (loss, aux)
    has_aux=False, state=s       loss_fn(*args, state=s)      -> (loss, new_state)
    has_aux=True,  state=s       loss_fn(*args, state=s)      -> (loss, (aux, new_state))

`loss` is a scalar; `args` are what the method documents (e.g. `(params, key)`). `state` is any
pytree threaded through the passes in order, each pass getting the previous pass's new state, e.g.
batch-norm running statistics (Haiku's `transform_with_state` convention, with `state` as keyword).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ['with_aux_and_state']


def with_aux_and_state(loss_fn: Callable[..., Any], *, has_aux: bool,
                       with_state: bool) -> Callable[..., Any]:
  """`loss_fn` as `f(*args, state) -> (loss, (aux, new_state))`, for `jax.grad(f, has_aux=True)`.

  `aux` is None without `has_aux`; `new_state` is None (and `state` ignored) without `with_state`.
  """
  def call(*args, state):
    if not with_state:
      out = loss_fn(*args)
      return (out[0], (out[1], None)) if has_aux else (out, (None, None))
    loss, extra = loss_fn(*args, state=state)
    return (loss, extra) if has_aux else (loss, (None, extra))
  return call
