"""Loads a dataset through TensorFlow Datasets (`tfds.data_source`, random access, no TensorFlow).

Reading prepared ``array_record`` data needs only ``tensorflow-datasets``; preparing (downloading) a
dataset needs TensorFlow: ``pip install -e '.[tfds]'`` and then either set
``config.dataset.download=True`` or run ``tfds build NAME --data_dir=DIR --file_format=array_record``.
"""
from __future__ import annotations

import numpy as np

from robust_jax.data.arrays import DatasetError, Split, Splits


def load_tfds(name: str, data_dir: str | None, download: bool) -> Splits:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(name, data_dir=data_dir or None)
  if download and not builder.is_prepared():
    try:
      builder.download_and_prepare(file_format='array_record')
    except ImportError as e:
      raise DatasetError(f'preparing TFDS dataset {name!r} needs TensorFlow: pip install -e '
                         f"'.[tfds]' ({e})") from e
  try:
    sources = {split: tfds.data_source(name, split=split, data_dir=data_dir or None,
                                       download=False)
               for split in ('train', 'test')}
  except (NotImplementedError, FileNotFoundError, AssertionError) as e:
    where = data_dir or '~/tensorflow_datasets'
    raise DatasetError(
        f'TFDS dataset {name!r} is not prepared as array_record in {where!r}. On a host with '
        f"internet: pip install -e '.[tfds]' && tfds build {name} --data_dir={where} "
        '--file_format=array_record (or set config.dataset.download=True)') from e
  return Splits(**{split: _read_all(source) for split, source in sources.items()})


def _read_all(source) -> Split:
  records = [source[i] for i in range(len(source))]
  images = np.stack([r['image'] for r in records]).astype(np.uint8)
  labels = np.asarray([r['label'] for r in records], np.int32)
  return Split(images, labels)
