"""Reader for the IDX format that MNIST and Fashion-MNIST are published in.

A folder holds ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]``. Format: big-endian magic
``0x00 0x00 dtype ndim``, then ``ndim`` uint32 sizes, then the data. A file that is not gzip or
not IDX of unsigned bytes, is truncated, holds more or fewer values than its header says, or has
the wrong number of dimensions (3 for images, 1 for labels) is a one-line `DatasetError` naming it.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from robust_jax.data.arrays import DatasetError, Split, Splits, one_line

__all__ = ['load_idx_folder', 'read_idx']

_IDX_UBYTE = 0x08
_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
          'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def read_idx(path: str, download_hint: str = '') -> np.ndarray:
  """Reads one (optionally gzipped) IDX file of unsigned bytes into a numpy array."""
  remedy = f'replace it with a fresh copy{"; " + download_hint if download_hint else ""}'
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      raw = f.read()
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise DatasetError(
        f'{path}: damaged or truncated gzip file ({one_line(e)}); {remedy}') from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
    magic = raw[:4].hex() or 'none: empty file'
    raise DatasetError(f'{path}: not an IDX file of unsigned bytes (magic {magic}, expected 000008 '
                       f'then the number of dimensions); {remedy}')
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise DatasetError(f'{path}: IDX header of {ndim} dimensions cut off after {len(raw)} bytes; '
                       f'{remedy}')
  shape = tuple(int(s) for s in np.frombuffer(raw, '>u4', ndim, offset=4))
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != math.prod(shape):  # exact: np.prod would wrap around for 2**31 * 2**31 * 4
    raise DatasetError(f'{path}: header says shape {shape} but holds {data.size} values; {remedy}')
  return data.reshape(shape)


def load_idx_folder(data_dir: str, download_hint: str = '') -> Splits:
  """Loads train and test splits from a folder of the four standard IDX files."""
  splits = {}
  for split, (image_name, label_name) in _FILES.items():
    images = _read_named(data_dir, image_name, 3, download_hint)
    labels = _read_named(data_dir, label_name, 1, download_hint)
    splits[split] = Split(images[..., None], labels,
                          origin=f'IDX folder {data_dir!r}, {split} split')
  return Splits(**splits)


def _read_named(data_dir: str, name: str, ndim: int, download_hint: str) -> np.ndarray:
  for candidate in (name + '.gz', name):
    path = os.path.join(data_dir, candidate)
    if os.path.exists(path):
      array = read_idx(path, download_hint)
      if array.ndim != ndim:
        raise DatasetError(f'{path}: IDX array of shape {array.shape}, expected {ndim} '
                           f'dimension{"s" if ndim > 1 else ""}; is it another of the four files?')
      return array
  hint = f'; {download_hint}' if download_hint else ''
  raise DatasetError(f'IDX file {name}[.gz] not found in {data_dir!r}{hint}')
