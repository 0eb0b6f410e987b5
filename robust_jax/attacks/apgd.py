"""APGD: auto projected gradient descent (Croce & Hein, ICML 2020), the core of AutoAttack.

Per example, with step size η (initially 2ε), momentum α = 0.75 and checkpoints w_j:

    z^{k+1}   = Π(x^k + η d(∇ℓ(x^k)))
    x^{k+1}   = Π(x^k + α (z^{k+1} - x^k) + (1 - α)(x^k - x^{k-1}))      (α = 1 at k = 0)

At each checkpoint η is halved and the iterate restarts from the best point so far if
(1) the loss increased in at most ρ = 0.75 of the steps since the last checkpoint, or
(2) η was not reduced at the last checkpoint and the best loss has not improved since.
Checkpoint intervals follow the reference implementation: the first after max(⌊0.22 N⌋, 1) steps,
then each ⌊0.03 N⌋ shorter, down to ⌊0.06 N⌋; condition (1) uses <= like the reference code (the
paper writes <). Differences from the reference code (fra31/auto-attack): the increase count of the
first interval compares against the starting loss (the reference compares the first step to an
unset zero entry); the random start is uniform in the ε-ball (the reference starts on its surface:
x + ε t / ||t||); a run that never misclassifies returns its highest-loss point (the reference
returns the clean image). Returns a misclassified point where one was found.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks import arguments, attack_losses, restarts as restarts_lib, threat_model
from robust_jax.attacks.pgd import LogitsFn

__all__ = ['APGD_LOSSES', 'apgd', 'checkpoint_schedule']

APGD_LOSSES = ('ce', 'margin', 'dlr')


def checkpoint_schedule(num_steps: int) -> tuple[np.ndarray, np.ndarray]:
  """(is_checkpoint (N,) bool, interval length at that step (N,)) as in the reference code."""
  interval = max(int(0.22 * num_steps), 1)
  shrink, minimum = max(int(0.03 * num_steps), 1), max(int(0.06 * num_steps), 1)
  is_checkpoint, lengths, counter = np.zeros(num_steps, bool), np.zeros(num_steps), 0
  for step in range(num_steps):
    counter += 1
    if counter == interval:
      is_checkpoint[step], lengths[step] = True, interval
      interval, counter = max(interval - shrink, minimum), 0
  return is_checkpoint, lengths


def apgd(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array, *,
         epsilon: float, num_steps: int = 100, norm: str = 'linf', loss: str = 'ce',
         restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
         targeted: bool = False) -> jax.Array:
  """Adversarial images (B, ...) in B_ε(images) ∩ [0, 1]; `loss` is 'ce' or 'dlr' (or 'margin').

  Arguments are checked once before tracing the loop (see `arguments.py`; ValueError or TypeError,
  one line); ρ and the momentum lie in [0, 1]. A traced ε or traced images are not value-checked.
  """
  arguments.check_attack(logits_fn, images, labels, key, epsilon=epsilon, num_steps=num_steps,
                         norm=norm, random_start=True, restarts=restarts, loss=loss,
                         targeted=targeted, loss_choices=APGD_LOSSES)
  arguments.check_number('rho', rho, 0.0, maximum=1.0)
  arguments.check_number('momentum', momentum, 0.0, maximum=1.0)
  loss_fn = attack_losses.get(loss, targeted)
  is_checkpoint, lengths = (jnp.asarray(a) for a in checkpoint_schedule(num_steps))
  expand = lambda v: v.reshape((-1,) + (1,) * (images.ndim - 1))

  def evaluate(x):
    def total(x):
      logits = logits_fn(x)
      per_example = loss_fn(logits, labels)
      return per_example.sum(), (per_example, logits)
    gradient, (per_example, logits) = jax.grad(total, has_aux=True)(x)
    return per_example, gradient, attack_losses.success(logits, labels, targeted)

  def run(run_key):
    x = threat_model.random_start(run_key, images, epsilon, norm)
    loss0, grad0, success0 = evaluate(x)
    batch = images.shape[0]
    state = dict(x=x, x_previous=x, grad=grad0, loss=loss0,
                 step_size=jnp.full((batch,), 2.0 * epsilon), x_best=x, grad_best=grad0,
                 loss_best=loss0, loss_best_at_check=loss0, reduced_at_check=jnp.ones(batch, bool),
                 increases=jnp.zeros(batch), x_success=x, success=success0)

    def body(step, s):
      alpha = jnp.where(step > 0, momentum, 1.0)
      z = threat_model.project(
          s['x'] + expand(s['step_size']) * threat_model.ascent_direction(s['grad'], norm),
          images, epsilon, norm)
      x_new = threat_model.project(
          s['x'] + alpha * (z - s['x']) + (1 - alpha) * (s['x'] - s['x_previous']),
          images, epsilon, norm)
      loss_new, grad_new, success_new = evaluate(x_new)
      improved = loss_new > s['loss_best']
      s = dict(s, x_previous=s['x'], x=x_new, grad=grad_new, loss=loss_new,
               increases=s['increases'] + (loss_new > s['loss']),
               x_best=jnp.where(expand(improved), x_new, s['x_best']),
               grad_best=jnp.where(expand(improved), grad_new, s['grad_best']),
               loss_best=jnp.maximum(loss_new, s['loss_best']),
               x_success=jnp.where(expand(success_new), x_new, s['x_success']),
               success=s['success'] | success_new)
      # Checkpoint: halve the step and restart from the best point where progress stalled.
      oscillating = s['increases'] <= lengths[step] * rho
      stalled = ~s['reduced_at_check'] & (s['loss_best_at_check'] >= s['loss_best'])
      reduce = is_checkpoint[step] & (oscillating | stalled)
      at_check = lambda new, old: jnp.where(is_checkpoint[step], new, old)
      return dict(s, step_size=jnp.where(reduce, s['step_size'] / 2, s['step_size']),
                  x=jnp.where(expand(reduce), s['x_best'], s['x']),
                  grad=jnp.where(expand(reduce), s['grad_best'], s['grad']),
                  reduced_at_check=at_check(reduce, s['reduced_at_check']),
                  loss_best_at_check=at_check(s['loss_best'], s['loss_best_at_check']),
                  increases=at_check(jnp.zeros_like(s['increases']), s['increases']))

    s = jax.lax.fori_loop(0, num_steps, body, state)
    return (jnp.where(expand(s['success']), s['x_success'], s['x_best']), s['success'],
            s['loss_best'])

  adversarial, _, _ = restarts_lib.best_of_restarts(run, key, restarts)
  return jax.lax.stop_gradient(adversarial)
