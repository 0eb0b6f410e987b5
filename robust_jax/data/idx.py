"""Reader for the IDX format that MNIST and Fashion-MNIST are published in.

A folder holds ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``. Format: big-endian magic
``0x00 0x00 dtype ndim``, then ``ndim`` uint32 sizes, then the data.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from robust_jax.data.arrays import DatasetError, Split, Splits

__all__ = ['load_idx_folder', 'read_idx']

_IDX_UBYTE = 0x08
_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
          'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def read_idx(path: str) -> np.ndarray:
  """Reads one (optionally gzipped) IDX file of unsigned bytes into a numpy array."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    raw = f.read()
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
    raise DatasetError(f'{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})')
  ndim = raw[3]
  shape = tuple(int(s) for s in np.frombuffer(raw, '>u4', ndim, offset=4))
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(shape)):
    raise DatasetError(f'{path}: header says shape {shape} but holds {data.size} values')
  return data.reshape(shape)


def load_idx_folder(data_dir: str, download_hint: str = '') -> Splits:
  """Loads train and test splits from a folder of the four standard IDX files."""
  splits = {}
  for split, (image_name, label_name) in _FILES.items():
    images = _read_named(data_dir, image_name, download_hint)
    labels = _read_named(data_dir, label_name, download_hint)
    splits[split] = Split(images[..., None], labels.astype(np.int32))
  return Splits(**splits)


def _read_named(data_dir: str, name: str, download_hint: str) -> np.ndarray:
  for candidate in (name + '.gz', name):
    path = os.path.join(data_dir, candidate)
    if os.path.exists(path):
      return read_idx(path)
  hint = f'; {download_hint}' if download_hint else ''
  raise DatasetError(f'IDX file {name}[.gz] not found in {data_dir!r}{hint}')
