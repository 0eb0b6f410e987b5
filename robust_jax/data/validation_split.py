"""A validation split held out of the training examples, for model selection off the test set.

`hold_out(train, k)` -> (train minus k examples, the k examples). The k are stratified by class:
class c of n_c training examples gives ⌊k·n_c/N⌋ examples, and the k - Σ⌊·⌋ left go one each to
the classes with the largest remainders k·n_c/N - ⌊k·n_c/N⌋ (ties to the smaller class index).
Within a class the examples are the first of a permutation drawn with the fixed
`VALIDATION_SEED`, not the run's seed: every run, seed and method of one dataset holds out the same
examples, so their validation numbers compare, and the split never moves between a run and its
resume. Both outputs keep the training order of their examples.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from robust_jax.data.arrays import DatasetError, Split

__all__ = ['VALIDATION_SEED', 'class_counts', 'hold_out', 'held_out_indices']

VALIDATION_SEED = 20_200_606  # fixed: the split is a property of the dataset, not of the run


def class_counts(labels: np.ndarray, num_examples: int) -> dict[int, int]:
  """How many of `num_examples` each class gives (largest remainders; module docstring)."""
  classes, sizes = np.unique(labels, return_counts=True)
  exact = num_examples * sizes / len(labels)
  counts = np.floor(exact).astype(int)
  order = sorted(range(len(classes)), key=lambda i: (-(exact[i] - counts[i]), classes[i]))
  for i in order[:num_examples - counts.sum()]:
    counts[i] += 1
  return {int(c): int(n) for c, n in zip(classes, counts)}


def held_out_indices(labels: np.ndarray, num_examples: int) -> np.ndarray:
  """Sorted indices (num_examples,) of the validation examples among `labels` (N,)."""
  rng = np.random.default_rng(VALIDATION_SEED)
  chosen = []
  for label, count in class_counts(labels, num_examples).items():
    members = np.flatnonzero(labels == label)
    chosen.append(members[rng.permutation(len(members))[:count]])
  return np.sort(np.concatenate(chosen))


def hold_out(train: Split, num_examples: int, num_classes: int) -> tuple[Split, Split]:
  """(training examples left, validation split) of `num_examples` stratified examples of `train`.

  Raises DatasetError (one line, naming `config.dataset.validation_examples`) unless
  num_classes <= num_examples <= N - num_classes, so that both parts can hold every class.
  """
  size = len(train)
  if not num_classes <= num_examples <= size - num_classes:
    raise DatasetError(
        f'config.dataset.validation_examples={num_examples}: must be between {num_classes} (one '
        f'per class) and {size - num_classes} (the {size} training examples of {train.origin} '
        f'less one per class), or 0 for no validation split')
  held = held_out_indices(train.labels, num_examples)
  kept = np.setdiff1d(np.arange(size), held, assume_unique=True)
  return _take(train, kept, train.origin), _take(train, held, f'{train.origin}, validation examples')


def _take(split: Split, indices: np.ndarray, origin: str) -> Split:
  """The examples `indices` of `split`: every per-example array indexed, so that a subclass such
  as `TextSplit` keeps its extra arrays."""
  return dataclasses.replace(split, origin=origin, **{
      field.name: getattr(split, field.name)[indices] for field in dataclasses.fields(split)
      if isinstance(getattr(split, field.name), np.ndarray)})
