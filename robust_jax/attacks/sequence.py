"""Runs attacks in order, each on the examples still robust: AutoAttack's worst case per example.

    result = run_sequence(classify, images, labels, key, [('apgd-ce', attack), ('apgd-t', stages)])
    result.broken_by  # (N,): 0 misclassified clean, k broken first by attack k, -1 robust

As the reference's `run_standard_evaluation` (fra31/auto-attack), an example keeps the first
adversarial image that fools the model, and each attack sees only the examples no earlier attack
broke. An attack may be given as stages (e.g. APGD-T's target classes, one stage per rank): each
stage runs on the examples still robust after the previous one, as the reference's loops over
target classes and restarts do, so the costly later targets run on the few examples the first ones
left. The still-robust examples are compacted on the host between stages: a compiled program has
fixed shapes, and masking rows inside it would save no work.

Chunks of at most `batch_size` examples are padded to a size class, the device count times a
number with at most four significant bits (1, ..., 16, 18, 20, ..., 32, 36, ...): an attack
compiles once per size class, not once per number of survivors, and at most 1/8 of a chunk is
padding (padding to powers of two from 64 made APGD-T, FAB-T and Square 2.1-2.7× slower on 24
survivors). With `sharding` (e.g. `NamedSharding(mesh, P('data'))`) every chunk is split over
the devices like the train step's batches; padding rows are never counted.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['Attack', 'CLEAN', 'Classify', 'SequenceResult', 'accuracy_after_each', 'run_sequence']

CLEAN = 'clean'  # broken_by index 0: misclassified without an attack
_SIGNIFICANT_BITS = 4  # padded chunk sizes: device count × (a number with this many bits)

# An attack (or one stage of one): (images (b, ...), labels (b,), key) -> adversarial (b, ...);
# classify: (images, key) -> predicted labels (b,).
Attack = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
Classify = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class SequenceResult:
  """What `run_sequence` and `attacks.autoattack_sequence` return."""
  adversarial: np.ndarray  # (N, ...): the first image that fooled the model, else the clean one
  broken_by: np.ndarray  # (N,) int: index into the names (0 = clean), -1 = robust
  seconds: dict[str, float]  # per attack name, wall time including compilation
  compile_seconds: dict[str, float]  # per attack name, the part spent tracing and compiling


@contextlib.contextmanager
def _compile_clock() -> Iterator[list[float]]:
  """Yields [seconds]: JAX's tracing, lowering and XLA compilation inside the block (its
  '/jax/core/compile/' monitoring events), summed."""
  total = [0.0]

  def listener(event, duration, **kwargs):
    del kwargs
    if event.startswith('/jax/core/compile/'):
      total[0] += duration

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield total
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def accuracy_after_each(broken_by: np.ndarray, names: Sequence[str]) -> dict[str, float]:
  """{name: robust accuracy after that step of the sequence}; `names[0]` gives clean accuracy."""
  broken_by = np.asarray(broken_by)
  return {name: float(np.mean((broken_by == -1) | (broken_by > k))) for k, name in
          enumerate(names)}


def _size_class(count: int) -> int:
  """The smallest number >= count with at most _SIGNIFICANT_BITS significant bits (< 1/8 more)."""
  granule = 2 ** max(0, count.bit_length() - _SIGNIFICANT_BITS)
  return -(-count // granule) * granule


def _chunk_sizes(count: int, batch_size: int, multiple: int) -> list[tuple[int, int]]:
  """(examples, padded size) per chunk: full chunks of batch_size (rounded up to a multiple of
  `multiple`), the last padded to `multiple` × its size class (`_size_class`), at most
  batch_size."""
  round_up = lambda n: -(-n // multiple) * multiple
  batch_size = round_up(batch_size)
  sizes = [(batch_size, batch_size)] * (count // batch_size)
  rest = count % batch_size
  if rest:
    sizes.append((rest, min(batch_size, multiple * _size_class(-(-rest // multiple)))))
  return sizes


def run_sequence(classify: Classify, images, labels, key: jax.Array,
                 attacks: Sequence[tuple[str, Attack | Sequence[Attack]]], *,
                 batch_size: int = 500,
                 sharding: jax.sharding.Sharding | None = None) -> SequenceResult:
  """Runs `attacks` in order, each on the examples still robust; a worst case per example.

  images (N, ...) and labels (N,) on the host or a device; example i counts as robust while
  classify(x, key) == labels[i] at its clean image and every attack's output so far. `attacks`:
  (name, attack) pairs, the attack a function or a sequence of stages (module docstring). Keys:
  chunk c of stage s of attack k (1-based) gets fold_in(fold_in(key, k), c) split into an attack
  key, the same for every stage (a stage derives its own draws from it, e.g. APGD-T's rank r from
  fold_in(key, r - 2), so that its first stage repeats the attack run whole), and a classify key,
  folded with s for s >= 1. The clean pass classifies chunk c with fold_in(fold_in(key, 0), c).
  """
  images, labels = np.asarray(images), np.asarray(labels)
  multiple = 1 if sharding is None else len(sharding.device_set)
  place = (lambda a: jnp.asarray(a)) if sharding is None else (
      lambda a: jax.device_put(a, sharding))
  adversarial, broken_by = images.copy(), np.full(len(labels), -1)
  seconds, compile_seconds = {}, {}

  def chunks(indices):
    start = 0
    for c, (count, padded) in enumerate(_chunk_sizes(len(indices), batch_size, multiple)):
      rows = np.concatenate([indices[start:start + count], np.full(padded - count, indices[0])])
      yield c, rows, count
      start += count

  for c, rows, count in chunks(np.arange(len(labels))):
    predicted = classify(place(images[rows]), jax.random.fold_in(jax.random.fold_in(key, 0), c))
    wrong = np.asarray(predicted)[:count] != labels[rows[:count]]
    broken_by[rows[:count][wrong]] = 0

  def run_stages(k, stages):
    for s, attack in enumerate(stages):
      robust = np.flatnonzero(broken_by == -1)
      if not len(robust):
        return
      for c, rows, count in chunks(robust):
        attack_key, classify_key = jax.random.split(
            jax.random.fold_in(jax.random.fold_in(key, k), c))
        found = attack(place(images[rows]), place(labels[rows]), attack_key)
        if s:
          classify_key = jax.random.fold_in(classify_key, s)
        predicted = np.asarray(classify(found, classify_key))[:count]
        real = rows[:count]
        fooled = predicted != labels[real]
        adversarial[real[fooled]] = np.asarray(found)[:count][fooled]
        broken_by[real[fooled]] = k

  for k, (name, stages) in enumerate(attacks, 1):
    started = time.perf_counter()
    with _compile_clock() as compiling:
      run_stages(k, [stages] if callable(stages) else stages)
    seconds[name], compile_seconds[name] = time.perf_counter() - started, compiling[0]
  return SequenceResult(adversarial, broken_by, seconds, compile_seconds)
