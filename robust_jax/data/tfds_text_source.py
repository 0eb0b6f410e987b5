"""Reads a text classification dataset prepared by TensorFlow Datasets (`tfds.data_source`).

The text of an example is its `text_features` joined by one space (AG News: title, description;
IMDB: text). Only prepared `array_record` data is read (no TensorFlow needed); preparing needs
TensorFlow and a network: ``pip install -e '.[tfds]' && tfds build NAME --data_dir=DIR
--file_format=array_record``, which the one-line error for missing data gives in full.
"""
from __future__ import annotations

import numpy as np

from robust_jax.data.arrays import DatasetError
from robust_jax.data.text import RawText

__all__ = ['load_tfds_text', 'tfds_version']


def _builder(name: str, data_dir: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.builder(name, data_dir=data_dir or None, file_format='array_record')


def tfds_version(name: str, data_dir: str) -> str:
  """'NAME:VERSION' of the dataset TFDS would read, to key caches by."""
  return f'{name}:{_builder(name, data_dir).version}'


def load_tfds_text(name: str, data_dir: str, text_features: tuple[str, ...],
                   download: bool) -> tuple[RawText, RawText]:
  """(train, test) texts and labels of the prepared TFDS dataset `name`."""
  builder = _builder(name, data_dir)
  root = str(builder.data_dir_root)
  prepare = (f"pip install -e '.[tfds]' && tfds build {name} --data_dir={root} "
             '--file_format=array_record')
  if download:
    raise DatasetError(f'config.dataset.download=True: text datasets are not downloaded here; on a '
                       f'host with internet run {prepare}')
  try:
    sources = [builder.as_data_source(split=split) for split in ('train', 'test')]
  except (KeyError, NotImplementedError, FileNotFoundError) as e:
    raise DatasetError(f'TFDS dataset {name!r} is not prepared as array_record in {root!r}; on a '
                       f'host with internet run {prepare}') from e
  return tuple(_read_all(source, f'TFDS {name} in {root!r}, {split} split', text_features)
               for source, split in zip(sources, ('train', 'test')))


def _read_all(source, origin: str, text_features: tuple[str, ...]) -> RawText:
  """The texts and the labels as TFDS stores them, nothing cast (`load_splits` checks them)."""
  texts, labels = [], []
  for i in range(len(source)):
    record = source[i]
    text = ' '.join(_as_text(record[feature]) for feature in text_features)
    if not text.strip():
      raise DatasetError(f'{origin}: example {i} has an empty text; every example needs words')
    texts.append(text)
    labels.append(record['label'])
  return RawText(texts, np.asarray(labels), origin=origin)


def _as_text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)
