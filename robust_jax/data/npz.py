"""Loads a dataset from one ``.npz`` file with arrays ``x_train, y_train, x_test, y_test``.

Images are uint8, (N, H, W, C) or (N, H, W) for greyscale; labels are integer class indices (N,).
Nothing is cast here: `arrays.Split` and `load_splits` check the arrays (`arrays` docstring).
"""
from __future__ import annotations

import os

from robust_jax.data.arrays import DatasetError, Split, Splits, read_npz

__all__ = ['KEYS', 'load_npz']

KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def load_npz(path: str) -> Splits:
  if not os.path.exists(path):
    raise DatasetError(f'npz file {path!r} not found; it must hold arrays {", ".join(KEYS)}')
  arrays = read_npz(path, KEYS, f'it must hold {", ".join(KEYS)} (write it with np.savez)')

  def split(name):
    x, y = arrays[f'x_{name}'], arrays[f'y_{name}']
    return Split(x[..., None] if x.ndim == 3 else x, y,
                 origin=f'npz file {path!r}, {name} split (x_{name}, y_{name})')
  return Splits(split('train'), split('test'))
