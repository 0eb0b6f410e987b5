"""Datasets: host-side sources (IDX folder, TFDS, npz; text: CSV, TFDS) and the on-device pipeline.

`config.dataset` also configures training augmentation (`pipeline` module docstring): `augmentation`
('default' = the dataset's own, 'none', 'crop', 'crop_flip') with `crop_padding` and `crop_fill`,
`autoaugment` ('none', 'cifar10', 'svhn') and `cutout_length` (0 = off).

Text datasets (`ag_news`, `imdb`; `robust_jax.data.text`) are token ids on the devices under the
same name as images, int32 (N, `max_length`), tokenised once and cached in `cache_dir` ('' =
`text.default_cache_dir()`) with the settings `max_length`, `vocab_size`, `min_count` and
`remove_stop_words`; they have no augmentation. Source 'csv': `path` is a folder holding the two
files `csv_files` = (train, test); source 'tfds': `path` is the TFDS data_dir.
"""
from __future__ import annotations

import dataclasses
import os

from robust_jax.config import schema as cs
from robust_jax.data import autoaugment, pipeline, text, validation_split
from robust_jax.data.arrays import DatasetError, Split, Splits
from robust_jax.data.csv_source import file_sha256, read_csv_split
from robust_jax.data.idx import load_idx_folder
from robust_jax.data.npz import load_npz
from robust_jax.data.specs import DatasetSpec, SPECS
from robust_jax.data.tfds_source import load_tfds
from robust_jax.data.tfds_text_source import load_tfds_text, tfds_version

IMAGE_SOURCES = ('idx', 'tfds', 'npz')
TEXT_SOURCES = ('csv', 'tfds')
SOURCES = ('idx', 'tfds', 'npz', 'csv')
AUGMENTATIONS = ('default', *pipeline.CROP_AUGMENTATIONS)

SCHEMA: cs.Schema = {
    'name': cs.one_of(*SPECS),
    'source': cs.one_of(*SOURCES),
    # idx: folder of the four IDX files; tfds: data_dir ('' = TFDS default); npz: the .npz file.
    'path': cs.text(),
    'download': cs.boolean(),  # tfds only: download and prepare if missing (needs TensorFlow)
    'augmentation': cs.one_of(*AUGMENTATIONS),  # 'default' = the dataset's standard augmentation
    'crop_padding': cs.integer(0, 16),
    'crop_fill': cs.integer(0, 255),  # uint8 value of the crop's padding (AMP reference: 128)
    'autoaugment': cs.one_of('none', *autoaugment.POLICIES),
    # side of the Cutout square, 0 = off; else 2 to the image side (robust_jax.config.validation)
    'cutout_length': cs.integer(0),
    # > 0: that many training examples, stratified by class with a fixed key, held out for model
    # selection (`data.validation_split`); 0 = none (the paper rows)
    'validation_examples': cs.integer(0),
    # Text only (module docstring):
    'max_length': cs.integer(1),  # tokens per example, padded or cut (the notebooks: 256)
    # embedding rows, <pad> and <unk> included
    'vocab_size': cs.integer(3, note='<pad> and <unk> take 2 ids: vocab_size 2 makes every word '
                             '<unk>'),
    'min_count': cs.integer(1),  # words seen fewer times in the training split are <unk>
    'remove_stop_words': cs.boolean(),  # drop `text.STOP_WORDS` (the notebooks do; PROPOSAL list)
    'csv_files': cs.sequence_of(cs.text(), min_length=2, max_length=2, unique=True,
                                allowed='must be two file names, (train file, test file)',
                                note='testing on the training file measures nothing'),
    'cache_dir': cs.text(),
}


def spec_for(dataset_config) -> DatasetSpec:
  """The dataset's spec; for text, with the config's sequence length and vocabulary size."""
  spec = SPECS[dataset_config.name]
  if spec.modality != 'text':
    return spec
  return dataclasses.replace(spec, image_shape=(dataset_config.max_length,),
                             vocab_size=dataset_config.vocab_size)


def augmentation_for(dataset_config) -> str:
  if dataset_config.augmentation == 'default':
    return spec_for(dataset_config).default_augmentation
  return dataset_config.augmentation


def augment_fn_for(dataset_config):
  """The training augmentation `fn(uint8 images, key) -> float32 in [0, 1]` the config names; for
  text the identity on token ids (text has no augmentation)."""
  if spec_for(dataset_config).modality == 'text':
    if augmentation_for(dataset_config) != 'none':
      raise cs.ConfigError(f'config.dataset.augmentation={dataset_config.augmentation!r}: '
                           f"{dataset_config.name} is text; use 'default' or 'none'")
    return lambda tokens, key: tokens
  return pipeline.make_augment_fn(
      augmentation_for(dataset_config), dataset_config.crop_padding, dataset_config.crop_fill,
      dataset_config.cutout_length, dataset_config.autoaugment)


def eval_input_fn_for(dataset_config):
  """The model input of a stored batch in evaluation, `fn(stored) -> inputs`: uint8 images ->
  float32 in [0, 1] (`pipeline.to_unit_float`); text token ids unchanged."""
  if spec_for(dataset_config).modality == 'text':
    return lambda tokens: tokens
  return pipeline.to_unit_float


def load_splits(dataset_config) -> Splits:
  """Loads train and test splits into host memory and checks them against the dataset's spec.

  Every source's splits pass the same checks (`arrays` module docstring): both splits non-empty,
  uint8 images (text: int32 token ids in [0, vocab_size), lengths in [1, max_length]) of the spec's
  shape, labels class indices in [0, num_classes) returned as int32; any failure is a one-line
  `DatasetError` naming the file and split, the index and value at fault.
  """
  spec = spec_for(dataset_config)
  source, path = dataset_config.source, dataset_config.path
  allowed = TEXT_SOURCES if spec.modality == 'text' else IMAGE_SOURCES
  if source not in allowed:
    raise cs.ConfigError(f'config.dataset.source={source!r}: {spec.name} is {spec.modality} data; '
                         f'use one of {", ".join(allowed)}')
  if spec.modality == 'text':
    splits = _load_text(dataset_config, spec)
  elif source == 'idx':
    if not path:
      raise DatasetError(f'config.dataset.path must name a folder of IDX files for {spec.name}; '
                         f'{spec.idx_download_hint or "IDX is the MNIST/Fashion-MNIST format"}')
    splits = load_idx_folder(path, spec.idx_download_hint)
  elif source == 'npz':
    splits = load_npz(path)
  else:
    splits = load_tfds(spec.tfds_name, path, dataset_config.download)
  return _with_validation(splits.checked(spec), dataset_config, spec)


def _with_validation(splits: Splits, dataset_config, spec: DatasetSpec) -> Splits:
  """`splits` with `dataset_config.validation_examples` training examples held out."""
  if not dataset_config.validation_examples:
    return splits
  train, validation = validation_split.hold_out(splits.train, dataset_config.validation_examples,
                                                spec.num_classes)
  return dataclasses.replace(splits, train=train, validation=validation)


def _load_text(dataset_config, spec: DatasetSpec) -> Splits:
  """The token ids of a text dataset, from the cache, or tokenised (then cached)."""
  settings = text.TokenizerSettings(dataset_config.max_length, dataset_config.vocab_size,
                                    dataset_config.min_count, dataset_config.remove_stop_words)
  path = dataset_config.path
  if dataset_config.source == 'csv':
    files = tuple(dataset_config.csv_files)
    if len(files) != 2:
      raise cs.ConfigError(f'config.dataset.csv_files={files!r}: must be (train file, test file)')
    paths = [os.path.join(path, name) for name in files]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
      raise DatasetError(f'config.dataset.path={path!r}: CSV file {absent[0]!r} not found; path '
                         f'must be a folder holding config.dataset.csv_files={files!r}')
    source_id = 'csv:' + ','.join(file_sha256(p) for p in paths)
    read_raw = lambda: tuple(read_csv_split(p, spec.num_classes) for p in paths)
  else:
    source_id = 'tfds:' + tfds_version(spec.tfds_name, path)
    read_raw = lambda: load_tfds_text(spec.tfds_name, path, spec.text_features,
                                      dataset_config.download)
  return text.load_cached(spec.name, source_id, settings, dataset_config.cache_dir, read_raw)


__all__ = ['DatasetError', 'DatasetSpec', 'IMAGE_SOURCES', 'SCHEMA', 'SOURCES', 'SPECS', 'Split',
           'Splits', 'TEXT_SOURCES', 'augment_fn_for', 'augmentation_for', 'eval_input_fn_for',
           'load_splits', 'spec_for', 'text']
