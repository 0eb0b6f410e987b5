"""APGD and APGD-T: auto projected gradient descent (Croce & Hein, ICML 2020), AutoAttack's core.

Per example, with step size η (initially 2ε), momentum α = 0.75 and checkpoints w_j:

    z^{k+1}   = Π(x^k + η d(∇ℓ(x^k)))
    x^{k+1}   = Π(x^k + α (z^{k+1} - x^k) + (1 - α)(x^k - x^{k-1}))      (α = 1 at k = 0)

At each checkpoint η is halved and the iterate restarts from the best point so far if
(1) the loss increased in at most ρ = 0.75 of the steps since the last checkpoint, or
(2) η was not reduced at the last checkpoint and the best loss has not improved since.
Checkpoint intervals follow the reference implementation: the first after max(⌊0.22 N⌋, 1) steps,
then each ⌊0.03 N⌋ shorter, down to ⌊0.06 N⌋; condition (1) uses <= like the reference code (the
paper writes <).

Start point x^0 (`start`): 'sphere' (default, as the reference code) is x + ε u / ||u||, on the
surface of the ε-ball, with u ~ U[-1, 1]^d and ||·||∞ for L∞ (one coordinate at ±ε) or
u ~ N(0, I) and ||·||_2 for L2; 'ball' draws x^0 uniformly from the ε-ball (robust_jax's choice
before AutoAttack was added). Both are then clipped to [0, 1].

APGD-T (`apgd_targeted`) maximises the targeted DLR loss -(z_y - z_t) / (z_π1 - (z_π3 + z_π4)/2)
for each of the `num_target_classes` highest-scoring wrong classes t of the clean logits in turn
(9 in AutoAttack, all C - 1 below 10 classes); an example counts as broken once it is
misclassified, as in the reference code, and keeps the first such point.

Randomised models (`eot_samples=n`): `logits_fn(images, key)` takes a PRNG key for its randomness
(e.g. dropout); each step averages the gradient over n calls with fresh keys (expectation over
transformation, as the reference's `eot_iter`) and, as the reference code, ranks points and checks
success with the loss and logits of the last of the n calls.

Differences from the reference code (fra31/auto-attack): the increase count of the first interval
compares against the starting loss (the reference compares the first step to an unset zero entry);
a run that never misclassifies returns its highest-loss point (the reference returns the clean
image). `apgd_targeted` runs every target on the whole batch and keeps, per example, the first
success, as a pure function must; AutoAttack (`autoattack.py`) runs it one target rank at a time
on the examples still robust, as the reference. Both return a misclassified point where one was
found.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks import arguments, attack_losses, restarts as restarts_lib, threat_model
from robust_jax.arguments import show
from robust_jax.attacks.pgd import LogitsFn

__all__ = ['APGD_LOSSES', 'APGD_STARTS', 'apgd', 'apgd_targeted', 'checkpoint_schedule',
           'start_point']

APGD_LOSSES = ('ce', 'margin', 'dlr')
APGD_STARTS = ('sphere', 'ball')


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


def start_point(key: jax.Array, images: jax.Array, epsilon, norm: str,
                start: str = 'sphere') -> jax.Array:
  """x^0 in [0, 1]: on the ε-sphere, x + ε u / ||u|| ('sphere'), or uniform in the ε-ball ('ball').

  L∞: u ~ U[-1, 1]^d divided by ||u||∞; L2: u ~ N(0, I) divided by ||u||_2 (per example).
  """
  if start == 'ball':
    return threat_model.random_start(key, images, epsilon, norm)
  axes = tuple(range(1, images.ndim))
  if norm == 'linf':
    u = jax.random.uniform(key, images.shape, minval=-1.0, maxval=1.0)
    size = jnp.max(jnp.abs(u), axis=axes, keepdims=True)
  else:
    u = jax.random.normal(key, images.shape)
    size = threat_model.per_example_l2(u)
  return jnp.clip(images + epsilon * u / (size + threat_model.TINY), 0.0, 1.0)


def _check_common(logits_fn, images, labels, key, *, epsilon, num_steps, norm, loss, targeted,
                  restarts, rho, momentum, start, eot_samples) -> tuple[LogitsFn, int]:
  """Checks shared by apgd and apgd_targeted; returns (images -> logits, C)."""
  if eot_samples is not None:
    arguments.check_count('eot_samples', eot_samples)
  arguments.check_choice('start', start, APGD_STARTS)
  deterministic = _one_sample(logits_fn, eot_samples)
  arguments.check_attack(deterministic, images, labels, key, epsilon=epsilon, num_steps=num_steps,
                         norm=norm, random_start=True, restarts=restarts, loss=loss,
                         targeted=targeted, loss_choices=APGD_LOSSES)
  arguments.check_number('rho', rho, 0.0, maximum=1.0)
  arguments.check_number('momentum', momentum, 0.0, maximum=1.0)
  num_classes = jax.eval_shape(deterministic, jax.ShapeDtypeStruct(images.shape, images.dtype))
  return deterministic, num_classes.shape[-1]


def _one_sample(logits_fn, eot_samples) -> LogitsFn:
  """images -> logits: `logits_fn` itself, or one draw of a randomised `logits_fn(x, key)`."""
  if eot_samples is None:
    return logits_fn
  return lambda x: logits_fn(x, jax.random.key(0))


def _gradient_fn(logits_fn, loss_fn, success_fn, eot_samples):
  """evaluate(x, key) -> (loss (B,), ∇_x Σ loss, success (B,)); EOT over `eot_samples` draws."""
  def total(x, key):
    logits = logits_fn(x) if eot_samples is None else logits_fn(x, key)
    per_example = loss_fn(logits)
    return per_example.sum(), (per_example, logits)

  gradient = jax.grad(total, has_aux=True)

  def evaluate(x, key):
    if eot_samples is None:
      grad, (loss, logits) = gradient(x, key)
      return loss, grad, success_fn(logits)
    keys = jax.random.split(key, eot_samples)
    def draw(i, summed):
      grad, aux = gradient(x, keys[i])
      return summed[0] + grad, aux
    grad, (loss, logits) = gradient(x, keys[0])
    grad, (loss, logits) = jax.lax.fori_loop(1, eot_samples, draw, (grad, (loss, logits)))
    return loss, grad / eot_samples, success_fn(logits)

  return evaluate


def _run(evaluate, images, run_key, *, epsilon, num_steps, norm, rho, momentum, start):
  """One APGD run from a random start: (adversarial (B, ...), success (B,), best loss (B,))."""
  is_checkpoint, lengths = (jnp.asarray(a) for a in checkpoint_schedule(num_steps))
  expand = lambda v: v.reshape((-1,) + (1,) * (images.ndim - 1))
  model_key = jax.random.fold_in(run_key, 1)  # the model's randomness (eot_samples only)
  x = start_point(run_key, images, epsilon, norm, start)
  loss0, grad0, success0 = evaluate(x, jax.random.fold_in(model_key, 0))
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
    loss_new, grad_new, success_new = evaluate(x_new, jax.random.fold_in(model_key, step + 1))
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


def apgd(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array, *,
         epsilon: float, num_steps: int = 100, norm: str = 'linf', loss: str = 'ce',
         restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
         targeted: bool = False, start: str = 'sphere',
         eot_samples: int | None = None) -> jax.Array:
  """Adversarial images (B, ...) in B_ε(images) ∩ [0, 1]; `loss` is 'ce' or 'dlr' (or 'margin').

  labels: true classes (B,), or target classes when `targeted` (losses 'ce' and 'margin'; the
  targeted DLR needs both, see `apgd_targeted`). start: 'sphere' or 'ball' (module docstring).
  eot_samples: None for a deterministic `logits_fn(images)`; n for a randomised
  `logits_fn(images, key)`, each gradient averaged over n draws.

  Arguments are checked once before tracing the loop (see `arguments.py`; ValueError or TypeError,
  one line); ρ and the momentum lie in [0, 1]. A traced ε or traced images are not value-checked.
  """
  _check_common(logits_fn, images, labels, key, epsilon=epsilon, num_steps=num_steps, norm=norm,
                loss=loss, targeted=targeted, restarts=restarts, rho=rho, momentum=momentum,
                start=start, eot_samples=eot_samples)
  loss_fn = attack_losses.get(loss, targeted)
  evaluate = _gradient_fn(logits_fn, lambda logits: loss_fn(logits, labels),
                          lambda logits: attack_losses.success(logits, labels, targeted),
                          eot_samples)
  run = lambda run_key: _run(evaluate, images, run_key, epsilon=epsilon, num_steps=num_steps,
                             norm=norm, rho=rho, momentum=momentum, start=start)
  adversarial, _, _ = restarts_lib.best_of_restarts(run, key, restarts)
  return jax.lax.stop_gradient(adversarial)


def apgd_targeted(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, key: jax.Array, *,
                  epsilon: float, num_steps: int = 100, norm: str = 'linf',
                  num_target_classes: int | None = None, target_class_rank=None,
                  target_labels: jax.Array | None = None, restarts: int = 1,
                  rho: float = 0.75, momentum: float = 0.75,
                  start: str = 'sphere', eot_samples: int | None = None) -> jax.Array:
  """APGD-T: adversarial images (B, ...) in B_ε(images) ∩ [0, 1], from the targeted DLR loss.

  labels: the true classes (B,). Targets: `target_labels` (B,) if given (one sweep), else the
  `num_target_classes` highest-scoring wrong classes of the clean logits, best first, `num_steps`
  steps and `restarts` runs each (default min(9, C - 1), AutoAttack's standard version), or only
  the class ranked `target_class_rank` (2..C; rank 1 is the predicted class; an int, or an integer
  scalar traced by jit, unchecked). The sweep over rank r draws from fold_in(key, r - 2), so one
  rank alone repeats that rank's run of the whole sweep (AutoAttack runs the ranks one by one on
  the examples still robust). An example is broken once misclassified (any class) and keeps the
  first such point; an example never broken is returned unchanged (as the reference code). Needs
  C >= 4 classes (the loss uses z_π4). Other arguments as `apgd`.
  """
  deterministic, num_classes = _check_common(
      logits_fn, images, labels, key, epsilon=epsilon, num_steps=num_steps, norm=norm, loss='dlr',
      targeted=False, restarts=restarts, rho=rho, momentum=momentum, start=start,
      eot_samples=eot_samples)
  if num_classes < 4:
    raise ValueError(f'logits_fn gives C = {num_classes}: the targeted DLR loss of apgd_targeted '
                     'needs at least 4 classes (it divides by z_π1 - (z_π3 + z_π4)/2)')
  choices = dict(num_target_classes=num_target_classes, target_class_rank=target_class_rank,
                 target_labels=target_labels)
  given = [name for name, value in choices.items() if value is not None]
  if len(given) > 1:
    raise ValueError(f'{given[0]}={show(choices[given[0]])}: give at most one of '
                     'num_target_classes, target_class_rank and target_labels')
  first_rank = 0  # rank r - 2: the sweep's index of the class ranked r
  if target_labels is not None:
    arguments.check_class_indices('target_labels', target_labels, images.shape[0], num_classes)
    ranked = lambda rank: target_labels
    num_target_classes = 1
  else:
    if target_class_rank is not None:
      first_rank = arguments.check_int_range(
          'target_class_rank', target_class_rank, 2, num_classes,
          f' (rank 1 is the predicted class; logits_fn gives C = {num_classes})', traced=True) - 2
      num_target_classes = 1
    num_target_classes = arguments.check_int_range(
        'num_target_classes', min(9, num_classes - 1) if num_target_classes is None
        else num_target_classes, 1, num_classes - 1, f' (the wrong classes of C = {num_classes})')
    order = jnp.argsort(deterministic(images), -1)  # ascending: order[:, -1] the top class
    ranked = lambda rank: jnp.take(order, num_classes - 2 - rank, axis=1)

  def sweep(rank):
    targets = ranked(rank)
    evaluate = _gradient_fn(logits_fn,
                            lambda logits: attack_losses.dlr_targeted(logits, labels, targets),
                            lambda logits: attack_losses.success(logits, labels), eot_samples)
    run = lambda run_key: _run(evaluate, images, run_key, epsilon=epsilon, num_steps=num_steps,
                               norm=norm, rho=rho, momentum=momentum, start=start)
    return restarts_lib.best_of_restarts(run, jax.random.fold_in(key, rank), restarts)[:2]

  def body(rank, best):
    adversarial, success = sweep(rank)
    new = success & ~best[1]
    return (jnp.where(new.reshape((-1,) + (1,) * (images.ndim - 1)), adversarial, best[0]),
            best[1] | success)

  adversarial, _ = jax.lax.fori_loop(first_rank, first_rank + num_target_classes, body,
                                     (images, jnp.zeros(images.shape[0], bool)))
  return jax.lax.stop_gradient(adversarial)
