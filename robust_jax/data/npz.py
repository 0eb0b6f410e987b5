"""Loads a dataset from one ``.npz`` file with arrays ``x_train, y_train, x_test, y_test``.

Images are uint8, (N, H, W, C) or (N, H, W) for greyscale; labels are integers (N,).
"""
from __future__ import annotations

import os

import numpy as np

from robust_jax.data.arrays import DatasetError, Split, Splits

__all__ = ['KEYS', 'load_npz']

KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def load_npz(path: str) -> Splits:
  if not os.path.exists(path):
    raise DatasetError(f'npz file {path!r} not found; it must hold arrays {", ".join(KEYS)}')
  with np.load(path) as arrays:
    missing = [k for k in KEYS if k not in arrays]
    if missing:
      raise DatasetError(f'{path}: missing arrays {missing}; it must hold {", ".join(KEYS)}')
    def split(x, y):
      x = np.asarray(x)
      return Split(x[..., None] if x.ndim == 3 else x, np.asarray(y).astype(np.int32))
    return Splits(split(arrays['x_train'], arrays['y_train']),
                  split(arrays['x_test'], arrays['y_test']))
