"""TRADES (Zhang et al., ICML 2019): trade-off between clean accuracy and robustness.

    L(θ) = (1/B) Σ_b [ CE(f_θ(x_b), t(y_b)) + β · KL(softmax f_θ(x_b) || softmax f_θ(x'_b)) ]
    x'_b = argmax_{x' ∈ B_ε(x_b)} KL(softmax f(x_b) || softmax f(x'))     (PGD-k on the KL)

The inner maximisation runs on stop_gradient(θ) in `model_mode` (the reference code uses eval
mode); the clean and adversarial passes then run in training mode. The reference starts the attack
at x + 0.001·N(0, I); here it starts uniformly in the ε-ball (the KL and its gradient vanish at x).
TRADES makes its own adversarial examples, so `adversary` must be 'none'.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from robust_jax import attacks, losses
from robust_jax import config_schema as cs
from robust_jax.methods.adversarial_training import MODEL_MODES, attack_logits_fn
from robust_jax.objectives import LOSSES, LossAux

SCHEMA: cs.Schema = {
    'beta': cs.real(0.0),
    'epsilon': cs.real(0.0),
    'step_size': cs.positive_real(),
    'num_steps': cs.integer(1),
    'norm': cs.one_of(*attacks.NORMS),
    'model_mode': cs.one_of(*MODEL_MODES),
}
DEFAULTS = dict(beta=6.0, epsilon=0.1, step_size=0.025, num_steps=10, norm='linf',
                model_mode='eval')  # configs/fashion_mnist_adversarial.py:trades


def _check(config):
  if config.adversary.name != 'none':
    raise cs.ConfigError(f"config.adversary.name='{config.adversary.name}': TRADES makes its own "
                         "adversarial examples; use adversary 'none' with loss 'trades'")


@LOSSES.register('trades', SCHEMA, check=_check, defaults=DEFAULTS)
def trades_loss(config, model, targets_fn):
  def loss_fn(params, model_state, batch, key):
    model_key, start_key, clean_key, adversarial_key = jax.random.split(key, 4)
    logits_fn = attack_logits_fn(model, params, model_state, config.model_mode, model_key)
    adversarial = attacks.pgd(logits_fn, batch['image'], batch['label'], start_key,
                              epsilon=config.epsilon, step_size=config.step_size,
                              num_steps=config.num_steps, norm=config.norm, loss='kl')
    clean_logits, model_state = model.apply(params, model_state, batch['image'], train=True,
                                            key=clean_key)
    adversarial_logits, model_state = model.apply(params, model_state, adversarial, train=True,
                                                  key=adversarial_key)
    natural = jnp.mean(losses.soft_cross_entropy(clean_logits, targets_fn(batch['label'])))
    robust = jnp.mean(losses.kl_divergence(clean_logits, adversarial_logits))
    return natural + config.beta * robust, LossAux(model_state, clean_logits,
                                                   {'trades_kl': robust})
  return loss_fn
