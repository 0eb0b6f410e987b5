"""Minimal hand-written JAX train steps, the baselines `benchmark.py` compares the library's step to.

Each is what a researcher would write by hand for one objective: the same Flax module, optimizer and
data augmentation, no registries, no metrics beyond the loss. Signature of the returned jitted step:

    step(params, model_state, opt_state, images_uint8, labels, key)
        -> (params, model_state, opt_state, loss)
"""
from __future__ import annotations

import jax
import optax


def erm(module, optimizer, augment_fn, config):
  """Cross-entropy on the (augmented) batch, dropout and batch norm in training mode."""
  del config

  def step(params, model_state, opt_state, images, labels, key):
    augment_key, dropout_key = jax.random.split(key)
    x = augment_fn(images, augment_key)

    def loss_fn(p):
      logits, new_state = module.apply({'params': p, **model_state}, x, train=True,
                                       rngs={'dropout': dropout_key, 'feature_mask': dropout_key},
                                       mutable=list(model_state))
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), new_state

    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), {**model_state, **new_state}, opt_state, loss

  return step


def for_config(config):
  """The reference step that matches `config`'s objective, or raises if there is none yet."""
  sections = (config.loss.name, config.adversary.name, config.weight_perturbation.name)
  if sections == ('cross_entropy', 'none', 'none') and config.targets.name == 'one_hot':
    return erm
  raise NotImplementedError(f'no hand-written reference step for objective {sections}')
