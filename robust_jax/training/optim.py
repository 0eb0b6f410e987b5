"""Optimizers and learning-rate schedules from `config.optimizer` (optax).

Weight decay is coupled L2 (PyTorch `weight_decay`, added to the gradient before momentum) for `sgd`
and `adam`, and decoupled for `adamw`. All parameters are decayed, as in the reference PyTorch code.
Gradient clipping by global norm (AMP's reference uses 50) runs first when `grad_clip_norm > 0`.
"""
from __future__ import annotations

import optax

from robust_jax import arguments
from robust_jax.config import schema as cs

__all__ = ['SCHEDULES', 'SCHEMA', 'SWEEPABLE', 'check', 'check_run_length', 'make_optimizer', 'make_schedule',
           'unused_boundaries']

SCHEDULES = ('constant', 'cosine', 'piecewise', 'onecycle')

SCHEMA: cs.Schema = {
    'name': cs.one_of('sgd', 'adam', 'adamw'),
    'learning_rate': cs.positive_real(),
    'momentum': cs.real(0.0, 1.0, exclusive_maximum=True,  # sgd only
                        note='momentum 1 never forgets a gradient: the steps grow without bound'),
    'nesterov': cs.boolean(),  # sgd only, with momentum > 0 (`check`)
    'weight_decay': cs.real(0.0),
    'grad_clip_norm': cs.real(0.0),  # 0 disables clipping
    'schedule': cs.one_of(*SCHEDULES),
    # linear warm-up before 'constant' / 'cosine'; shorter than the run (`check`,
    # `check_run_length`)
    'warmup_epochs': cs.real(0.0),
    # 'piecewise' only (`check`): strictly increasing, at distinct steps (`check_run_length`)
    'boundaries_epochs': cs.sequence_of(
        cs.real(0.0, exclusive_minimum=True), order='increasing',
        note='each boundary multiplies the learning rate by decay_factor once, in order'),
    # 'piecewise': lr *= decay_factor at each boundary
    'decay_factor': cs.real(0.0, 1.0, exclusive_minimum=True,
                            note='each boundary multiplies the learning rate by it: 0 stops '
                            'learning, above 1 raises the rate'),
}
_WARMUP_SCHEDULES = ('constant', 'cosine')
# the keys `make_optimizer` passes on as numbers: replicas may sweep them
# (`robust_jax.training.replicas`); they may be traced values there
SWEEPABLE = ('learning_rate', 'weight_decay')


def check(config) -> None:
  """Raises ConfigError (one line) for optimizer settings that the schedule or optimizer would
  ignore, or a warm-up as long as the run's `config.train.num_epochs` (when `num_steps` is 0; in
  steps, `check_run_length` checks them once the steps per epoch are known). Boundaries at or
  after the end are allowed: a recipe shortened by `num_epochs` or `num_steps` (a quick run) keeps
  them, and the trainer prints which never apply (`unused_boundaries`)."""
  optimizer, train = config.optimizer, config.train
  boundaries = tuple(optimizer.boundaries_epochs)
  if optimizer.nesterov and optimizer.name != 'sgd':
    raise cs.ConfigError(f'config.optimizer.nesterov=True: only optimizer sgd has Nesterov '
                         f'momentum, and config.optimizer.name={optimizer.name!r}')
  if optimizer.nesterov and optimizer.name == 'sgd' and optimizer.momentum == 0:
    raise cs.ConfigError(f'config.optimizer.nesterov=True: Nesterov momentum needs '
                         f'config.optimizer.momentum > 0, got {optimizer.momentum}')
  if boundaries and optimizer.schedule != 'piecewise':
    raise cs.ConfigError(f'config.optimizer.boundaries_epochs={boundaries!r}: only schedule '
                         f"'piecewise' reads them, and config.optimizer.schedule="
                         f'{optimizer.schedule!r}; use boundaries_epochs=() or schedule piecewise')
  if not boundaries and optimizer.schedule == 'piecewise':
    raise cs.ConfigError("config.optimizer.boundaries_epochs=(): schedule 'piecewise' needs at "
                         "least one boundary (without one the learning rate is constant: use "
                         "schedule 'constant')")
  if optimizer.warmup_epochs and optimizer.schedule not in _WARMUP_SCHEDULES:
    raise cs.ConfigError(f'config.optimizer.warmup_epochs={optimizer.warmup_epochs}: schedule '
                         f'{optimizer.schedule!r} has no warm-up (only '
                         f'{" and ".join(_WARMUP_SCHEDULES)} do); use warmup_epochs=0.0')
  if train.num_steps:  # the run's length in epochs is known only once the data are loaded
    return
  if optimizer.warmup_epochs and optimizer.warmup_epochs >= train.num_epochs:
    raise cs.ConfigError(f'config.optimizer.warmup_epochs={optimizer.warmup_epochs}: must be < '
                         f'config.train.num_epochs={train.num_epochs} (the learning rate would '
                         'still be rising when the run ends)')


def check_run_length(config, steps_per_epoch: int, total_steps: int) -> None:
  """Raises ConfigError (one line) when `config` (the optimizer section) has a warm-up that, in
  steps, rounds to 0 or lasts the whole run of `total_steps` steps of `steps_per_epoch` each, a
  boundary at step 0, or boundaries on the same step (their decays would apply once)."""
  if config.schedule in _WARMUP_SCHEDULES and config.warmup_epochs:
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    if warmup == 0:
      raise cs.ConfigError(f'config.optimizer.warmup_epochs={config.warmup_epochs}: rounds to 0 '
                           f'steps at {steps_per_epoch} steps per epoch, so there is no warm-up; '
                           'use 0.0 or a longer warm-up')
    if warmup >= total_steps:
      raise cs.ConfigError(f'config.optimizer.warmup_epochs={config.warmup_epochs}: {warmup} '
                           f'steps, must be fewer than the run\'s {total_steps} steps (the '
                           'learning rate would still be rising when the run ends)')
  if config.schedule != 'piecewise':
    return
  boundaries = tuple(config.boundaries_epochs)
  seen = {}
  for epochs in boundaries:
    step = int(round(epochs * steps_per_epoch))
    where = (f'config.optimizer.boundaries_epochs={boundaries!r}: {epochs} epochs is step {step} '
             f'at {steps_per_epoch} steps per epoch')
    if step == 0:
      raise cs.ConfigError(f'{where}, so its decay applies from the start; use a later boundary')
    if step in seen:
      raise cs.ConfigError(f'{where}, as is {seen[step]}, so their decays apply once; use '
                           'boundaries at least one step apart')
    seen[step] = epochs


def unused_boundaries(config, steps_per_epoch: int, total_steps: int) -> tuple[float, ...]:
  """The learning-rate boundaries (in epochs) of `config` (the optimizer section) that fall at or
  after the end of a run of `total_steps` steps, so that their decays never apply (a shortened
  recipe); () for schedules other than 'piecewise'."""
  if config.schedule != 'piecewise':
    return ()
  return tuple(epochs for epochs in config.boundaries_epochs
               if int(round(epochs * steps_per_epoch)) >= total_steps)


def make_schedule(config, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  lr = config.learning_rate  # a number, or traced (`SWEEPABLE`)
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


def make_optimizer(config, steps_per_epoch: int, total_steps: int, *,
                   validate_steps: bool = True
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, learning-rate schedule) for `config.optimizer`, a run of `total_steps` steps of
  `steps_per_epoch` each.

  Raises ConfigError when, in steps, a warm-up rounds to 0 or lasts the whole run, a boundary falls
  on step 0 or two on one step (`check_run_length`; boundaries after the end are allowed); pass
  `validate_steps=False` where the step counts are nominal (e.g. to build the optimizer only for
  its state's shapes, or to time steps).
  """
  if validate_steps:
    check_run_length(config, steps_per_epoch, total_steps)
  schedule = make_schedule(config, steps_per_epoch, total_steps)
  parts = []
  if config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(float(config.grad_clip_norm)))
  if config.name == 'adamw':
    parts.append(optax.adamw(schedule, weight_decay=config.weight_decay))
  else:
    # a traced weight decay is positive: replicas refuse sweeping 0 (it removes this step)
    if not arguments.is_concrete(config.weight_decay) or config.weight_decay > 0:
      parts.append(optax.add_decayed_weights(config.weight_decay))
    if config.name == 'sgd':
      parts.append(optax.sgd(schedule, momentum=float(config.momentum) or None,
                             nesterov=bool(config.nesterov)))
    else:
      parts.append(optax.adam(schedule))
  return optax.chain(*parts), schedule
