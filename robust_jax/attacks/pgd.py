"""Projected gradient descent (Madry et al. 2018) and FGSM (Goodfellow et al. 2015), L∞ and L2.

    x^0 = x  or  uniform in B_ε(x) ∩ [0,1]^d
    x^{t+1} = Π_{B_ε(x) ∩ [0,1]^d} ( x^t + α · d(∇_x ℓ(f(x^t), y)) )
    d(g) = sign(g) (L∞)  or  g / ||g||_2 (L2)

FGSM is one such step of size α = ε from the clean point (`random_start=True` with α = 1.25ε is the
FGSM-RS of Wong et al. 2020). `logits_fn(x) -> (B, C)` is any JAX function, so the attacks serve
training and evaluation alike and work without Flax. Outputs leave through `stop_gradient`.
"""
from __future__ import annotations

from collections.abc import Callable

import jax

from robust_jax.attacks import arguments, attack_losses, restarts as restarts_lib, threat_model

__all__ = ['LogitsFn', 'fgsm', 'pgd']

LogitsFn = Callable[[jax.Array], jax.Array]


def pgd(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array | None, *,
        epsilon: float, step_size: float, num_steps: int, norm: str = 'linf',
        random_start: bool = True, restarts: int = 1, loss: str = 'ce',
        targeted: bool = False) -> jax.Array:
  """Adversarial images (B, ...) in B_ε(images) ∩ [0, 1].

  labels: true classes (B,), or target classes when `targeted`. With `restarts > 1` every run starts
  from a fresh random point and each example keeps its most damaging run (misclassified first, then
  higher loss). `loss`: one of attack_losses.ATTACK_LOSSES ('kl' compares to the clean logits).

  Arguments are checked once before tracing the loop (see `arguments.py`; ValueError or TypeError,
  one line). A traced ε, step size or traced images (under jax.jit) are not value-checked.
  """
  arguments.check_attack(logits_fn, images, labels, key, epsilon=epsilon, step_size=step_size,
                         num_steps=num_steps, norm=norm, random_start=random_start,
                         restarts=restarts, loss=loss, targeted=targeted)
  return _pgd(logits_fn, images, labels, key, epsilon=epsilon, step_size=step_size,
              num_steps=num_steps, norm=norm, random_start=random_start, restarts=restarts,
              loss=loss, targeted=targeted)


def _pgd(logits_fn, images, labels, key, *, epsilon, step_size, num_steps, norm, random_start,
         restarts, loss, targeted):
  """`pgd` without the argument checks (its callers have checked)."""
  loss_fn = attack_losses.get(loss, targeted)
  clean_logits = jax.lax.stop_gradient(logits_fn(images)) if loss == 'kl' else None
  gradient = jax.grad(lambda x: loss_fn(logits_fn(x), labels, clean_logits).sum())

  def ascend(x):
    def body(_, x):
      step = step_size * threat_model.ascent_direction(gradient(x), norm)
      return threat_model.project(x + step, images, epsilon, norm)
    return jax.lax.fori_loop(0, num_steps, body, x)

  def start(run_key):
    return threat_model.random_start(run_key, images, epsilon, norm) if random_start else images

  if restarts == 1:
    return jax.lax.stop_gradient(ascend(start(key)))

  def run(run_key):
    x = ascend(start(run_key))
    logits = logits_fn(x)
    return (x, attack_losses.success(logits, labels, targeted),
            loss_fn(logits, labels, clean_logits))

  adversarial, _, _ = restarts_lib.best_of_restarts(run, key, restarts)
  return jax.lax.stop_gradient(adversarial)


def fgsm(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array | None = None,
         *, epsilon: float, norm: str = 'linf', random_start: bool = False,
         step_size: float | None = None, loss: str = 'ce', targeted: bool = False) -> jax.Array:
  """One signed (L∞) or normalised (L2) gradient step: x + ε·d(∇ℓ), clipped to [0, 1].

  With `random_start=True` it starts uniformly in the ball and steps `step_size` (default ε), then
  projects: FGSM-RS (Wong et al. 2020 use step_size = 1.25 ε). Arguments are checked as in `pgd`.
  """
  arguments.check_attack(logits_fn, images, labels, key, epsilon=epsilon, step_size=step_size,
                         num_steps=1, norm=norm, random_start=random_start, restarts=1, loss=loss,
                         targeted=targeted)
  return _pgd(logits_fn, images, labels, key, epsilon=epsilon,
              step_size=epsilon if step_size is None else step_size, num_steps=1, norm=norm,
              random_start=random_start, restarts=1, loss=loss, targeted=targeted)
