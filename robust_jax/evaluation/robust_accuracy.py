"""Robust accuracy during training: PGD-k at one ε over a fixed subset, in one compiled call.

The cheap check the training loop runs every `eval_every_epochs` when `eval.robust_examples` > 0
(robust overfitting: Rice, Wong and Kolter 2020). The attack is the robustness section's PGD
(`pgd_steps` steps of `pgd_relative_step_size` × ε, `pgd_restarts` restarts, random start, its
`norm` and `model_mode`) at the largest ε of `robustness.epsilons`; `robust_jax.evaluate` remains
the full evaluation. Batches come from `data.pipeline.make_eval_batches` (padded, with a 0/1 mask),
so the count is exact on any number of devices.
"""
from __future__ import annotations

import fractions

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from robust_jax import attacks, sharding
from robust_jax.data.pipeline import to_unit_float
from robust_jax.models import ModelFns

__all__ = ['make_robust_eval_fn', 'training_epsilon']


def training_epsilon(robustness_config) -> str:
  """The ε (as written) of the check during training: the largest of `robustness.epsilons`."""
  return max(robustness_config.epsilons, key=fractions.Fraction)


def make_robust_eval_fn(model: ModelFns, mesh: Mesh, robustness_config):
  """Returns jitted `fn(params, model_state, batches, key) -> {'robust_accuracy'}`: the fraction
  of the real examples of `batches` ((num_batches, B, ...) uint8 images, labels, mask) that the
  model still classifies correctly after PGD; batch i attacks with `fold_in(key, i)`."""
  config = robustness_config
  epsilon = float(fractions.Fraction(training_epsilon(config)))

  def evaluate(params, model_state, batches, key):
    def one_batch(totals, indexed_batch):
      index, batch = indexed_batch
      batch_key = jax.random.fold_in(key, index)
      attack_key, model_key = jax.random.split(batch_key)
      logits_fn = lambda x: model.apply(params, model_state, x,
                                        train=config.model_mode == 'train', key=model_key)[0]
      images = to_unit_float(batch['image'])
      adversarial = attacks.pgd(logits_fn, images, batch['label'], attack_key, epsilon=epsilon,
                                step_size=config.pgd_relative_step_size * epsilon,
                                num_steps=config.pgd_steps, norm=config.norm, random_start=True,
                                restarts=config.pgd_restarts)
      correct = (jnp.argmax(logits_fn(adversarial), -1) == batch['label']) * batch['mask']
      return (totals[0] + correct.sum(), totals[1] + batch['mask'].sum()), None

    num_batches = batches['label'].shape[0]
    (correct, count), _ = jax.lax.scan(one_batch, (jnp.zeros(()), jnp.zeros(())),
                                       (jnp.arange(num_batches), batches))
    return {'robust_accuracy': correct / count}

  return jax.jit(evaluate, out_shardings=sharding.replicated(mesh))
