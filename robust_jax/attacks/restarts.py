"""Runs an attack several times from random starts and keeps, per example, the most damaging result."""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ['AttackRun', 'best_of_restarts', 'more_damaging']

# run(key) -> (adversarial (B, ...), success (B,) bool, loss (B,))
AttackRun = Callable[[jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


def more_damaging(success, loss, best_success, best_loss) -> jax.Array:
  """(B,) bool: a successful attack beats an unsuccessful one; otherwise the higher loss wins."""
  return (success & ~best_success) | ((success == best_success) & (loss > best_loss))


def best_of_restarts(run: AttackRun, key: jax.Array, restarts: int):
  """(adversarial, success, loss) of the most damaging of `restarts` runs, per example."""
  first = run(jax.random.fold_in(key, 0))
  if restarts == 1:
    return first

  def body(restart, best):
    candidate = run(jax.random.fold_in(key, restart))
    better = more_damaging(candidate[1], candidate[2], best[1], best[2])
    pick = lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    return jax.tree.map(pick, candidate, best)

  return jax.lax.fori_loop(1, restarts, body, first)
