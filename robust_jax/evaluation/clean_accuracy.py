"""Clean test accuracy and loss over a whole split in one compiled call (`lax.scan` over batches)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from robust_jax import losses, sharding
from robust_jax.data.pipeline import to_unit_float
from robust_jax.models import ModelFns

__all__ = ['make_clean_eval_fn']


def make_clean_eval_fn(model: ModelFns, mesh: Mesh, input_fn=to_unit_float):
  """Returns jitted `fn(params, model_state, batches) -> {'accuracy', 'loss'}` (eval mode).

  `batches` comes from `data.pipeline.make_eval_batches`: (num_batches, B, ...) with a 0/1 mask.
  `input_fn(stored batch) -> model inputs` (`data.eval_input_fn_for`): uint8 images -> [0, 1]
  floats by default; the identity for text token ids.
  """

  def evaluate(params, model_state, batches):
    def one_batch(totals, batch):
      logits, _ = model.apply(params, model_state, input_fn(batch['image']), train=False)
      correct = (jnp.argmax(logits, -1) == batch['label']) * batch['mask']
      loss = losses.cross_entropy(logits, batch['label']) * batch['mask']
      return jax.tree.map(jnp.add, totals, (correct.sum(), loss.sum(), batch['mask'].sum())), None

    zeros = (jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))
    (correct, loss, count), _ = jax.lax.scan(one_batch, zeros, batches)
    return {'accuracy': correct / count, 'loss': loss / count}

  return jax.jit(evaluate, out_shardings=sharding.replicated(mesh))
