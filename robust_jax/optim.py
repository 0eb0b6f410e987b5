"""Optimizers and learning-rate schedules from `config.optimizer` (optax).

Weight decay is coupled L2 (PyTorch `weight_decay`, added to the gradient before momentum) for `sgd`
and `adam`, and decoupled for `adamw`. All parameters are decayed, as in the reference PyTorch code.
Gradient clipping by global norm (AMP's reference uses 50) runs first when `grad_clip_norm > 0`.
"""
from __future__ import annotations

import optax

from robust_jax import config_schema as cs

__all__ = ['SCHEDULES', 'SCHEMA', 'make_optimizer', 'make_schedule']

SCHEDULES = ('constant', 'cosine', 'piecewise', 'onecycle')

SCHEMA: cs.Schema = {
    'name': cs.one_of('sgd', 'adam', 'adamw'),
    'learning_rate': cs.positive_real(),
    'momentum': cs.real(0.0, 1.0),  # sgd only
    'nesterov': cs.boolean(),  # sgd only
    'weight_decay': cs.real(0.0),
    'grad_clip_norm': cs.real(0.0),  # 0 disables clipping
    'schedule': cs.one_of(*SCHEDULES),
    'warmup_epochs': cs.real(0.0),  # linear warm-up before 'constant' / 'cosine'
    'boundaries_epochs': cs.sequence_of(cs.real(0.0, exclusive_minimum=True)),  # 'piecewise'
    'decay_factor': cs.positive_real(),  # 'piecewise': lr *= decay_factor at each boundary
}


def make_schedule(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  lr = float(config.learning_rate)
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  if config.schedule == 'piecewise':
    boundaries = {int(round(e * steps_per_epoch)): float(config.decay_factor)
                  for e in config.boundaries_epochs}
    return optax.piecewise_constant_schedule(lr, boundaries)
  if config.schedule == 'onecycle':
    return optax.cosine_onecycle_schedule(total_steps, lr)
  if config.schedule == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1))
  else:
    main = optax.constant_schedule(lr)
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(config, steps_per_epoch: int, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, learning-rate schedule) for `config.optimizer`."""
  schedule = make_schedule(config, steps_per_epoch, total_steps)
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  if config.name == 'adamw':
    parts.append(optax.adamw(schedule, weight_decay=float(config.weight_decay)))
  else:
    if config.weight_decay > 0:
      parts.append(optax.add_decayed_weights(float(config.weight_decay)))
    if config.name == 'sgd':
      parts.append(optax.sgd(schedule, momentum=float(config.momentum) or None,
                             nesterov=bool(config.nesterov)))
    else:
      parts.append(optax.adam(schedule))
  return optax.chain(*parts), schedule
