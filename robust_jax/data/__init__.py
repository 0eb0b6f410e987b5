"""Datasets: three host-side sources (IDX folder, TFDS, npz) and the on-device pipeline.

`config.dataset` also configures training augmentation (`pipeline` module docstring): `augmentation`
('default' = the dataset's own, 'none', 'crop', 'crop_flip') with `crop_padding` and `crop_fill`,
`autoaugment` ('none', 'cifar10', 'svhn') and `cutout_length` (0 = off).
"""
from __future__ import annotations

from robust_jax import config_schema as cs
from robust_jax.data import autoaugment, pipeline
from robust_jax.data.arrays import DatasetError, Split, Splits
from robust_jax.data.idx import load_idx_folder
from robust_jax.data.npz import load_npz
from robust_jax.data.specs import SPECS, DatasetSpec
from robust_jax.data.tfds_source import load_tfds

SOURCES = ('idx', 'tfds', 'npz')
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
    'cutout_length': cs.integer(0),  # side of the Cutout square; 0 = off
}


def spec_for(dataset_config) -> DatasetSpec:
  return SPECS[dataset_config.name]


def augmentation_for(dataset_config) -> str:
  if dataset_config.augmentation == 'default':
    return spec_for(dataset_config).default_augmentation
  return dataset_config.augmentation


def augment_fn_for(dataset_config):
  """The training augmentation `fn(uint8 images, key) -> float32 in [0, 1]` the config names."""
  return pipeline.make_augment_fn(
      augmentation_for(dataset_config), dataset_config.crop_padding, dataset_config.crop_fill,
      dataset_config.cutout_length, dataset_config.autoaugment)


def load_splits(dataset_config) -> Splits:
  """Loads train and test splits into host memory and checks them against the dataset's spec."""
  spec = spec_for(dataset_config)
  source, path = dataset_config.source, dataset_config.path
  if source == 'idx':
    if not path:
      raise DatasetError(f'config.dataset.path must name a folder of IDX files for {spec.name}; '
                         f'{spec.idx_download_hint or "IDX is the MNIST/Fashion-MNIST format"}')
    splits = load_idx_folder(path, spec.idx_download_hint)
  elif source == 'npz':
    splits = load_npz(path)
  else:
    splits = load_tfds(spec.tfds_name, path, dataset_config.download)
  for name, split in (('train', splits.train), ('test', splits.test)):
    if split.images.shape[1:] != spec.image_shape:
      raise DatasetError(f'{spec.name} {name} images have shape {split.images.shape[1:]}, '
                         f'expected {spec.image_shape}')
    if len(split) and (split.labels.min() < 0 or split.labels.max() >= spec.num_classes):
      raise DatasetError(f'{spec.name} {name} labels must lie in [0, {spec.num_classes})')
  return splits


__all__ = ['DatasetError', 'DatasetSpec', 'SCHEMA', 'SPECS', 'Split', 'Splits',
           'augment_fn_for', 'augmentation_for', 'load_splits', 'spec_for']
