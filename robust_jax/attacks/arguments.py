"""Checks of an attack's arguments, run once at the top of each attack (never per step).

Static properties are always checked, also while tracing under `jax.jit` or `jax.vmap`: names
(`norm`, `loss`), flags, integer counts, and the shapes and dtypes of images (B, ...) floating
point, labels (B,) integer and logits (B, C). Values are checked only where they are concrete, i.e.
a Python number or an array that is not a `jax.core.Tracer`: ε >= 0, step size > 0 (both finite),
images in [0, 1], labels in [0, C). A traced ε or traced images are accepted unchecked.

The number of classes C comes from `jax.eval_shape(logits_fn, images)`: the model is traced for
shapes only, never run. Every error is one line naming the argument, the value passed and what is
expected, e.g. `norm='Linf': must be one of 'linf', 'l2'`. The generic checks (numbers, counts,
names, keys, images, class indices) are `robust_jax.arguments`, shared with the methods, losses and
models; this module adds the attack-specific ones.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import jax

# The generic checks live in robust_jax.arguments (shared with the methods, losses and models);
# they are re-exported here for the attacks.
from robust_jax.arguments import (check_choice, check_class_indices, check_count, check_flag,
                                  check_image_array, check_index_array, check_index_range,
                                  check_int_range, check_key, check_number, check_pixel_values,
                                  is_concrete)
from robust_jax.attacks.attack_losses import ATTACK_LOSSES
from robust_jax.attacks.threat_model import NORMS

__all__ = ['check_attack', 'check_choice', 'check_class_indices', 'check_count', 'check_flag',
           'check_inputs', 'check_int_range', 'check_key', 'check_loss', 'check_number',
           'is_concrete']


def check_inputs(logits_fn: Callable, images, labels) -> int:
  """images (B, ...) floating point in [0, 1] with B >= 1, labels (B,) integer in [0, C); returns C.

  C is read from `jax.eval_shape(logits_fn, images)`, which must be (B, C): no FLOPs are spent.
  """
  if not callable(logits_fn):
    raise TypeError(f'logits_fn={type(logits_fn).__name__}: must be a function images -> logits')
  check_image_array('images', images)
  batch = images.shape[0]
  if batch == 0:
    raise ValueError(f'images.shape={tuple(images.shape)}: no examples to attack (B = 0); '
                     'skip the call when nothing is left')
  check_index_array('labels', labels, batch)
  logits = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
  if not hasattr(logits, 'shape') or len(logits.shape) != 2 or logits.shape[0] != batch:
    shape = tuple(logits.shape) if hasattr(logits, 'shape') else type(logits).__name__
    raise ValueError(f'logits_fn(images) gives {shape}: must be logits (B, C) with B = {batch}')
  num_classes = logits.shape[1]
  check_pixel_values('images', images)
  check_index_range('labels', labels, num_classes)
  return num_classes


def check_loss(loss, num_classes: int, targeted: bool,
               choices: Sequence[str] = ATTACK_LOSSES) -> None:
  """`loss` is a known name that suits the problem: DLR needs C >= 3, KL has no target class."""
  check_choice('loss', loss, choices)
  if loss == 'dlr' and num_classes < 3:
    raise ValueError(f"loss='dlr': needs at least 3 classes (it divides by z_π1 - z_π3); "
                     f"logits_fn gives C = {num_classes}")
  if loss == 'kl' and targeted:
    raise ValueError("loss='kl' with targeted=True: the KL to the clean prediction has no target "
                     "class; use loss 'ce' or 'margin' for a targeted attack")


def check_attack(logits_fn: Callable, images, labels, key, *, epsilon, norm, loss, targeted,
                 random_start, num_steps: int, restarts: int, step_size=None,
                 loss_choices: Sequence[str] = ATTACK_LOSSES) -> None:
  """All checks of an attack call; `step_size=None` means the attack derives it from ε.

  `loss_choices` are the loss names this attack supports. Raises ValueError or TypeError (one line).
  """
  check_choice('norm', norm, NORMS)
  check_flag('targeted', targeted)
  check_flag('random_start', random_start)
  check_count('num_steps', num_steps)
  restarts = check_count('restarts', restarts)
  check_number('epsilon', epsilon, 0.0)
  if step_size is not None:
    check_number('step_size', step_size, 0.0, strict=True)
  if random_start or restarts > 1:
    check_key(key)
  num_classes = check_inputs(logits_fn, images, labels)
  check_loss(loss, num_classes, targeted, loss_choices)
