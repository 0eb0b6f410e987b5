"""Checks of an attack's arguments, run once at the top of each attack (never per step).

Static properties are always checked, also while tracing under `jax.jit` or `jax.vmap`: names
(`norm`, `loss`), flags, integer counts, and the shapes and dtypes of images (B, ...) floating
point, labels (B,) integer and logits (B, C). Values are checked only where they are concrete, i.e.
a Python number or an array that is not a `jax.core.Tracer`: ε >= 0, step size > 0 (both finite),
images in [0, 1], labels in [0, C). A traced ε or traced images are accepted unchecked.

The number of classes C comes from `jax.eval_shape(logits_fn, images)`: the model is traced for
shapes only, never run. Every error is one line naming the argument, the value passed and what is
expected, e.g. `norm='Linf': must be one of 'linf', 'l2'`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
import numbers
import operator

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.attacks.attack_losses import ATTACK_LOSSES
from robust_jax.attacks.threat_model import NORMS

__all__ = ['check_attack', 'check_choice', 'check_class_indices', 'check_count', 'check_flag',
           'check_inputs', 'check_int_range', 'check_key', 'check_loss', 'check_number',
           'is_concrete']

_PIXEL_HINT = 'pixel values in [0, 1] (e.g. uint8 images / 255)'


def is_concrete(value) -> bool:
  """True when `value` can be read now: not a tracer of jax.jit, jax.vmap or jax.grad."""
  return not isinstance(value, jax.core.Tracer)


def _show(value) -> str:
  """A one-line rendering of a scalar argument: repr for Python values, the number for arrays."""
  if isinstance(value, (numbers.Number, str)) or value is None:
    return repr(value)
  if is_concrete(value) and np.ndim(value) == 0:
    return repr(np.asarray(value).item())
  return f'{type(value).__name__} of shape {tuple(np.shape(value))}'


def check_choice(name: str, value, choices: Sequence[str]) -> None:
  """`value` is one of `choices` (case-exact)."""
  if not isinstance(value, str) or value not in choices:
    listed = ', '.join(repr(c) for c in choices)
    raise ValueError(f'{name}={_show(value)}: must be one of {listed}')


def check_flag(name: str, value) -> None:
  """`value` is True or False (a Python or NumPy bool; a string such as 'yes' is refused)."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f'{name}={_show(value)}: must be True or False')


def _static_int(value) -> int | None:
  """`value` as a Python int if it is a static Python or NumPy integer (not a bool), else None."""
  try:
    return None if isinstance(value, (bool, np.bool_)) else operator.index(value)
  except TypeError:
    return None


def check_count(name: str, value) -> int:
  """`value` is an int >= 1 (Python or NumPy, static: a traced count is refused); returns it."""
  count = _static_int(value)
  if count is None:
    raise TypeError(f'{name}={_show(value)}: must be an int >= 1 (a static Python int)')
  if count < 1:
    raise ValueError(f'{name}={count}: must be an int >= 1')
  return count


def check_number(name: str, value, minimum: float, *, strict: bool = False,
                 maximum: float | None = None) -> None:
  """`value` is a real scalar; where concrete, finite and in [minimum, maximum] (or > minimum).

  A traced scalar passes unchecked (its value is not known while tracing).
  """
  is_real_array = hasattr(value, 'dtype') and (jnp.issubdtype(value.dtype, jnp.floating)
                                               or jnp.issubdtype(value.dtype, jnp.integer))
  if isinstance(value, (bool, np.bool_)) or not (isinstance(value, numbers.Real) or is_real_array):
    raise TypeError(f'{name}={_show(value)}: must be a real number')
  if np.ndim(value) != 0:
    raise ValueError(f'{name}.shape={tuple(np.shape(value))}: must be a scalar')
  if not is_concrete(value):
    return
  number = float(value)
  low_ok = number > minimum if strict else number >= minimum
  if not (np.isfinite(number) and low_ok and (maximum is None or number <= maximum)):
    expected = (f'in {"(" if strict else "["}{minimum:g}, {maximum:g}]' if maximum is not None
                else f'{">" if strict else ">="} {minimum:g}')
    raise ValueError(f'{name}={_show(value)}: must be a finite number {expected}')


def _value_range(array) -> tuple[float, float]:
  """(min, max) of a concrete array, reduced on its device also while an outer jit traces."""
  with jax.ensure_compile_time_eval():
    return float(jnp.min(array)), float(jnp.max(array))


def check_inputs(logits_fn: Callable, images, labels) -> int:
  """images (B, ...) floating point in [0, 1], labels (B,) integer in [0, C); returns C.

  C is read from `jax.eval_shape(logits_fn, images)`, which must be (B, C): no FLOPs are spent.
  """
  if not callable(logits_fn):
    raise TypeError(f'logits_fn={type(logits_fn).__name__}: must be a function images -> logits')
  if not hasattr(images, 'dtype') or not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f'images.dtype={getattr(images, "dtype", type(images).__name__)}: must be '
                    f'floating point with {_PIXEL_HINT}')
  if images.ndim < 2:
    raise ValueError(f'images.shape={tuple(images.shape)}: must be (B, ...) with a batch axis '
                     'first and at least one feature axis')
  batch = images.shape[0]
  _check_index_array('labels', labels, batch)
  logits = jax.eval_shape(logits_fn, jax.ShapeDtypeStruct(images.shape, images.dtype))
  if not hasattr(logits, 'shape') or len(logits.shape) != 2 or logits.shape[0] != batch:
    shape = tuple(logits.shape) if hasattr(logits, 'shape') else type(logits).__name__
    raise ValueError(f'logits_fn(images) gives {shape}: must be logits (B, C) with B = {batch}')
  num_classes = logits.shape[1]
  if is_concrete(images) and images.size:
    low, high = _value_range(images)
    if not (low >= 0.0 and high <= 1.0):
      raise ValueError(f'images: values range over [{low:g}, {high:g}]; must be {_PIXEL_HINT}')
  _check_index_range('labels', labels, num_classes)
  return num_classes


def _check_index_array(name: str, values, batch: int) -> None:
  """`values` is an integer array of shape (B,)."""
  if not hasattr(values, 'dtype') or not jnp.issubdtype(values.dtype, jnp.integer):
    raise TypeError(f'{name}.dtype={getattr(values, "dtype", type(values).__name__)}: must be '
                    'an integer type (class indices)')
  if tuple(values.shape) != (batch,):
    raise ValueError(f'{name}.shape={tuple(values.shape)}: must be (B,) = ({batch},), one class '
                     'index per image')


def _check_index_range(name: str, values, num_classes: int) -> None:
  """Where concrete, every entry of `values` lies in [0, C)."""
  if is_concrete(values) and values.size:
    low, high = (int(v) for v in _value_range(values))
    if low < 0 or high >= num_classes:
      raise ValueError(f'{name}: values range over [{low}, {high}]; must be class indices in '
                       f'[0, {num_classes - 1}] (logits_fn gives C = {num_classes})')


def check_class_indices(name: str, values, batch: int, num_classes: int) -> None:
  """`values` (B,) integer class indices in [0, C) (the range is checked where concrete)."""
  _check_index_array(name, values, batch)
  _check_index_range(name, values, num_classes)


def check_int_range(name: str, value, low: int, high: int, hint: str = '') -> int:
  """`value` is a static int in [low, high]; returns it. `hint` ends the message (e.g. why)."""
  number = _static_int(value)
  if number is None or not low <= number <= high:
    raise (TypeError if number is None else ValueError)(
        f'{name}={_show(value)}: must be an int in [{low}, {high}]{hint}')
  return number


def check_key(key) -> None:
  """`key` is not None: for a call that draws random numbers."""
  if key is None:
    raise ValueError('key=None: this call draws random starts and needs a PRNG key '
                     '(e.g. jax.random.key(0))')


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
                 random_start, num_steps: int = 1, restarts: int = 1, step_size=None,
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
