"""DropAttack: masked adversarial perturbations of inputs and weights (Ni, Li & Kao 2021,
arXiv 2108.12805), as the official code computes it (papers.md 2.2 and 2.5).

    L = L(θ, x) + (1/K) Σ_t L(θ, x + R_x^t) + (1/K) Σ_t L(θ ⊕_W R_W^t)
    R^t = R^{t-1} + ε · M ⊙ d^t / ||d^t||_2,   R^0 = 0,   M ~ Bernoulli(p) drawn once per step
    d^t = g_0 + (1/K) Σ_{s<t} ∇ L_s           (the accumulated gradient, as the code's `.grad`)

M = 1 marks attacked coordinates (no 1/p rescaling). Perturbations are constants: the gradient of
every term flows to all parameters at its perturbed point. Weight masks cover the whole attacked
tensor and are shared by the batch; input masks are per example (keyed by batch index). The input
perturbation is normalised by the Frobenius norm of the whole batch gradient (`input_norm='batch'`,
the code's convention) or per example ('per_example'); inputs are not clipped to [0, 1].
ε for weights is absolute, or relative to ||W||_F (`weight_epsilon_relative`, PROPOSAL from
papers.md 2.4: ε_W = κ ||W||_F, as ε = 5 on an embedding table does not transfer to conv kernels).
Default attacked weight: the first layer's kernel (PROPOSAL, mirroring the code's first RNN layer).

Cost: 1 + 2K forward-backward passes; each pass's single backward gives both the input and the
weight gradient, and the total gradient is assembled from them (`objectives.loss_with_gradient`).
The K steps run in `robust_jax.inner_loop` (a `fori_loop`, unrolled on CPU).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from robust_jax import config_schema as cs
from robust_jax import random_utils
from robust_jax.inner_loop import inner_loop
from robust_jax.objectives import WEIGHT_PERTURBATIONS, loss_with_gradient

SCHEMA: cs.Schema = {
    'attack_probability': cs.probability(),  # p: probability that a coordinate is attacked
    'num_steps': cs.integer(1),  # K
    'attack_input': cs.boolean(),
    'input_epsilon': cs.real(0.0),
    'input_norm': cs.one_of('batch', 'per_example'),
    'attack_weights': cs.boolean(),
    'weight_paths': cs.sequence_of(cs.text()),  # '/'-joined parameter paths, e.g. 'Conv_0/kernel'
    'weight_epsilon': cs.real(0.0),
    'weight_epsilon_relative': cs.boolean(),
}
DEFAULTS = dict(attack_probability=0.5, num_steps=1, attack_input=True, input_epsilon=1.0,
                input_norm='per_example', attack_weights=True, weight_paths=('Conv_0/kernel',),
                weight_epsilon=0.05, weight_epsilon_relative=True)  # configs/dropattack.py


def _check(config):
  section = config.weight_perturbation
  if section.attack_input and config.adversary.name != 'none':
    raise cs.ConfigError(
        f"config.weight_perturbation.attack_input=True: DropAttack's input attack needs gradients "
        f"with respect to the inputs, which adversary '{config.adversary.name}' replaces; set "
        "attack_input=False or adversary 'none'")
  if not (section.attack_input or section.attack_weights):
    raise cs.ConfigError('config.weight_perturbation: DropAttack with attack_input=False and '
                         'attack_weights=False is plain training; enable one')


def _normalise(direction, per_example: bool):
  axes = tuple(range(1, direction.ndim)) if per_example else None
  norm = jnp.sqrt(jnp.sum(direction * direction, axis=axes, keepdims=per_example))
  ok = (norm > 0) & jnp.isfinite(norm)
  return jnp.where(ok, direction / jnp.where(ok, norm, 1.0), 0.0)


def _tree_add_scaled(tree, other, scale):
  return jax.tree.map(lambda a, b: a + scale * b, tree, other)


@WEIGHT_PERTURBATIONS.register('dropattack', SCHEMA, check=_check, defaults=DEFAULTS)
def dropattack(config, loss_fn):
  def value_and_grads(params, state, images, batch, key):
    """(loss, aux), (∇θ, ∇x) of one pass from a single backward."""
    def of_params_and_images(p, x):
      return loss_fn(p, state, {**batch, 'image': x}, key)
    return jax.value_and_grad(of_params_and_images, argnums=(0, 1), has_aux=True)(params, images)

  def dropattack_loss_fn(params, model_state, batch, key):
    frozen = jax.lax.stop_gradient(params)
    flat = traverse_util.flatten_dict(frozen, sep='/')
    missing = [p for p in config.weight_paths if p not in flat]
    if config.attack_weights and missing:
      raise cs.ConfigError(f'config.weight_perturbation.weight_paths: {missing[0]!r} is not a '
                           f'parameter; parameters: {", ".join(flat)}')
    # Separate keys for masks and for the passes' own randomness (dropout, feature masks).
    clean_key, input_mask_key, input_pass_key, weight_mask_key, weight_pass_key = (
        jax.random.split(key, 5))
    images = batch['image']
    (clean_loss, aux), (clean_grad, clean_input_grad) = value_and_grads(
        frozen, model_state, images, batch, clean_key)
    total_loss, total_grad, state = clean_loss, clean_grad, aux.model_state
    k = config.num_steps

    if config.attack_input:
      mask = random_utils.per_example_bernoulli(input_mask_key, config.attack_probability,
                                                images.shape)

      def input_step(t, carry):
        perturbation, direction, loss_sum, grad_sum, state = carry
        perturbation = perturbation + config.input_epsilon * mask * _normalise(
            direction, config.input_norm == 'per_example')
        (loss, step_aux), (grad, input_grad) = value_and_grads(
            frozen, state, images + perturbation, batch, jax.random.fold_in(input_pass_key, t))
        return (perturbation, direction + input_grad / k, loss_sum + loss / k,
                _tree_add_scaled(grad_sum, grad, 1 / k), step_aux.model_state)

      _, _, total_loss, total_grad, state = inner_loop(
          k, input_step, (jnp.zeros_like(images), clean_input_grad, total_loss, total_grad, state))

    if config.attack_weights:
      masks = {p: jax.random.bernoulli(jax.random.fold_in(weight_mask_key, i),
                                       config.attack_probability, flat[p].shape)
               for i, p in enumerate(config.weight_paths)}
      epsilons = {p: config.weight_epsilon * (jnp.linalg.norm(flat[p])
                                              if config.weight_epsilon_relative else 1.0)
                  for p in config.weight_paths}

      def perturbed(perturbations):
        return traverse_util.unflatten_dict(
            {**flat, **{p: flat[p] + r for p, r in perturbations.items()}}, sep='/')

      def weight_step(t, carry):
        perturbations, directions, loss_sum, grad_sum, state = carry
        perturbations = {p: perturbations[p] + epsilons[p] * masks[p] * _normalise(
            directions[p], False) for p in perturbations}
        (loss, step_aux), (grad, _) = value_and_grads(
            perturbed(perturbations), state, images, batch, jax.random.fold_in(weight_pass_key, t))
        flat_grad = traverse_util.flatten_dict(grad, sep='/')
        directions = {p: directions[p] + flat_grad[p] / k for p in directions}
        return (perturbations, directions, loss_sum + loss / k,
                _tree_add_scaled(grad_sum, grad, 1 / k), step_aux.model_state)

      flat_clean_grad = traverse_util.flatten_dict(clean_grad, sep='/')
      zeros = {p: jnp.zeros_like(flat[p]) for p in config.weight_paths}
      _, _, total_loss, total_grad, state = inner_loop(
          k, weight_step, (zeros, {p: flat_clean_grad[p] for p in config.weight_paths},
                           total_loss, total_grad, state))

    return (loss_with_gradient(total_loss, total_grad, params),
            aux.replace(model_state=state,
                        metrics={**aux.metrics, 'clean_loss': clean_loss}))

  return dropattack_loss_fn
