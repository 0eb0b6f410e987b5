"""In-memory dataset splits as uint8 image arrays and int32 labels (host side)."""
from __future__ import annotations

import dataclasses

import numpy as np

from robust_jax.errors import UserError

__all__ = ['DatasetError', 'Split', 'Splits']


class DatasetError(UserError, RuntimeError):
  """A dataset is missing or malformed; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: `images` uint8 (N, H, W, C) and `labels` int32 (N,)."""

  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise DatasetError(f'images must be uint8 (N, H, W, C), got {self.images.dtype} '
                         f'{self.images.shape}')
    if self.labels.shape != (self.images.shape[0],):
      raise DatasetError(f'labels shape {self.labels.shape} does not match {self.images.shape[0]} '
                         'images')

  def __len__(self) -> int:
    return self.images.shape[0]


@dataclasses.dataclass(frozen=True)
class Splits:
  train: Split
  test: Split
