"""In-memory dataset splits (host side) and the checks every source's data passes.

Every source builds `Split`s, whose construction checks the arrays on their own, and
`data.load_splits` hands each split to `Split.checked(spec)`, which checks it against the dataset's
spec, so a new source gets every check below for free. Each failure is a one-line `DatasetError`
that starts with the split's `origin` (file and split) and names the index and value at fault.

On construction (`Split.__post_init__`):
  * at least one example (N >= 1);
  * images uint8 (N, H, W, C): other dtypes are refused, never cast; float pixels in [0, 1] or
    [0, 255] must be converted to uint8 by the user (the message says how), because guessing the
    scale would silently change the data; text (`text.TextSplit`): int32 token ids (N, L) and
    lengths (N,) in [1, L] with the ids nonzero exactly before each length;
  * labels of shape (N,), one per example.
Against the spec (`Split.checked`):
  * images (text: token ids) of shape `spec.image_shape` per example; text ids in
    [0, `spec.vocab_size`);
  * labels that are class indices, `check_labels`: an integer dtype, or floats whose values are all
    integers (1.0 is read as 1; 1.7 and nan are refused); every value in [0, `spec.num_classes`),
    checked before the cast to int32, so no value wraps around.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import zipfile
import zlib
from collections.abc import Sequence

import numpy as np

from robust_jax.data.specs import DatasetSpec
from robust_jax.errors import UserError

__all__ = ['DatasetError', 'Split', 'Splits', 'check_labels', 'one_line', 'read_npz']

_ZIP_MAGIC = (b'PK\x03\x04', b'PK\x05\x06')  # a zip's first entry, or an empty zip


class DatasetError(UserError, RuntimeError):
  """A dataset is missing or malformed; the message says how to get it."""


def one_line(error: BaseException) -> str:
  """The message of `error` with its whitespace (newlines included) collapsed to single spaces."""
  return ' '.join(str(error).split())


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> np.ndarray:
  """`labels` (N,) as int32 class indices, after checking that they are (module docstring); a
  `DatasetError` starting with `where` names the first bad label and its index otherwise."""
  remedy = f'labels must be class indices, integers in [0, {num_classes})'
  if labels.dtype.kind not in 'iuf':
    raise DatasetError(f'{where}: labels have dtype {labels.dtype}; {remedy}')
  if labels.dtype.kind == 'f':
    fractional = np.flatnonzero(labels != np.round(labels))  # nan != nan: refused too
    if fractional.size:
      i = fractional[0]
      raise DatasetError(f'{where}: label {labels[i]} at index {i} is not an integer; {remedy}')
  outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
  if outside.size:
    i = outside[0]
    raise DatasetError(f'{where}: label {labels[i]} at index {i} is outside [0, {num_classes}); '
                       f'{remedy}')
  return labels.astype(np.int32)


def read_npz(path: str, keys: Sequence[str], remedy: str) -> dict[str, np.ndarray]:
  """The arrays `keys` of the .npz archive at `path`, all read now; a file that is no zip archive,
  is damaged or truncated, holds pickled objects or lacks a key is a one-line `DatasetError` naming
  `path` and ending in `remedy`."""
  try:
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a folder fails on open, with its errno
      raise DatasetError(f'{path}: not a regular file but a FIFO, socket or device (reading it '
                         f'could block forever); {remedy}')
    with open(path, 'rb') as f:
      head = f.read(6)
    if not head.startswith(_ZIP_MAGIC):
      raise DatasetError(f'{path}: not a zip archive but starts with {head!r} (an .npz file is a '
                         f'zip of .npy files); {remedy}')
    with np.load(path) as archive:
      missing = [k for k in keys if k not in archive]
      if missing:
        raise DatasetError(f'{path}: missing arrays {missing}; {remedy}')
      return {k: archive[k] for k in keys}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
    raise DatasetError(f'{path}: cannot read this npz archive ({one_line(e)}); {remedy}') from None


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: `images` uint8 (N, H, W, C), N >= 1, and `labels` (N,): int32 class indices once
  `checked`, as the source read them before. `origin` names the data (file, split) in messages.

  Construction checks the arrays on their own; `checked` checks them against a dataset's spec
  (module docstring).
  """

  images: np.ndarray
  labels: np.ndarray
  origin: str = dataclasses.field(default='split', kw_only=True)

  def __post_init__(self):
    if self.images.ndim == 0 or not len(self.images):
      raise DatasetError(f'{self.origin}: no examples; every split needs at least one')
    self._check_inputs()
    if self.labels.shape != (len(self.images),):
      raise DatasetError(f'{self.origin}: labels have shape {self.labels.shape}, expected '
                         f'({len(self.images)},), one per example')

  def _check_inputs(self) -> None:
    images = self.images
    if images.dtype != np.uint8:
      raise DatasetError(
          f'{self.origin}: images have dtype {images.dtype}, expected uint8 pixels in [0, 255]; '
          'convert them first, e.g. np.round(x * 255).astype(np.uint8) for floats in [0, 1]')
    if images.ndim != 4:
      raise DatasetError(f'{self.origin}: images have shape {images.shape}, expected '
                         '(N, H, W, C)')

  def checked(self, spec: DatasetSpec) -> Split:
    """This split checked against `spec` (module docstring), its labels as int32."""
    if self.images.shape[1:] != spec.image_shape:
      raise DatasetError(f'{self.origin}: examples have shape {self.images.shape[1:]}, expected '
                         f'{spec.image_shape} for {spec.name}; set config.dataset.name to the '
                         'dataset the data holds')
    return dataclasses.replace(self, labels=check_labels(self.labels, spec.num_classes,
                                                         self.origin))

  def __len__(self) -> int:
    return self.images.shape[0]

  def first(self, num_examples: int):
    """The split of the first `num_examples` examples (every per-example array cut, so a
    subclass such as `TextSplit` keeps its extra arrays)."""
    return dataclasses.replace(self, **{
        field.name: getattr(self, field.name)[:num_examples]
        for field in dataclasses.fields(self) if isinstance(getattr(self, field.name), np.ndarray)})


@dataclasses.dataclass(frozen=True)
class Splits:
  train: Split
  test: Split
  validation: Split | None = None  # held out of training (`data.validation_split`)

  def checked(self, spec: DatasetSpec) -> Splits:
    """Both splits `Split.checked` against `spec`, training labels of at least two classes, and a
    test split that is not the training split (the same images and labels: a test on the training
    data would report memorisation)."""
    train, test = self.train.checked(spec), self.test.checked(spec)
    if np.all(train.labels == train.labels[0]):
      raise DatasetError(f'{train.origin}: every training label is {int(train.labels[0])}; a '
                         'classifier needs examples of at least two classes')
    if _same_arrays(train, test):
      raise DatasetError(f'{test.origin}: the test split is the training split ({train.origin} '
                         'holds the same images and labels); test accuracy would measure '
                         'memorisation: give held-out test data')
    return Splits(train, test)


def _same_arrays(first: Split, second: Split) -> bool:
  """Whether the two splits hold equal images (text: token ids) and labels: shapes compared first,
  so splits of different sizes (every published dataset) cost nothing; then labels, then a hash of
  the images, read once without a copy."""
  if first.images.shape != second.images.shape or not np.array_equal(first.labels,
                                                                     second.labels):
    return False
  return _digest(first.images) == _digest(second.images)


def _digest(array: np.ndarray) -> bytes:
  return hashlib.blake2b(np.ascontiguousarray(array)).digest()
