"""What robust_jax knows about each supported dataset: shape, classes, normalisation, augmentation."""
from __future__ import annotations

import dataclasses

__all__ = ['DatasetSpec', 'SPECS']


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static facts about one image classification dataset.

  `mean` and `std` are per-channel statistics in [0, 1] pixel units; models normalise inside their
  forward pass, so attack epsilons stay in pixel units.
  """

  name: str
  image_shape: tuple[int, int, int]  # (H, W, C)
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  default_augmentation: str  # 'none', 'crop' or 'crop_flip' (`pipeline.make_augment_fn`)
  tfds_name: str
  idx_download_hint: str = ''


SPECS: dict[str, DatasetSpec] = {
    'mnist': DatasetSpec(
        'mnist', (28, 28, 1), 10, (0.1307,), (0.3081,), 'none', 'mnist',
        'download the four IDX .gz files from https://yann.lecun.com/exdb/mnist/ into data_dir'),
    'fashion_mnist': DatasetSpec(
        'fashion_mnist', (28, 28, 1), 10, (0.2860,), (0.3530,), 'none', 'fashion_mnist',
        'on Debian/Ubuntu: apt-get install dataset-fashion-mnist (files land in '
        '/usr/share/datasets/fashion-mnist)'),
    # CIFAR and SVHN statistics as in the AMP reference code (papers.md section 1.4).
    'cifar10': DatasetSpec(
        'cifar10', (32, 32, 3), 10, (125.3 / 255, 123.0 / 255, 113.9 / 255),
        (63.0 / 255, 62.1 / 255, 66.7 / 255), 'crop_flip', 'cifar10'),
    'cifar100': DatasetSpec(
        'cifar100', (32, 32, 3), 100, (129.3 / 255, 124.1 / 255, 112.4 / 255),
        (68.2 / 255, 65.4 / 255, 70.4 / 255), 'crop_flip', 'cifar100'),
    # SVHN's 73,257 `train` digits (not `extra`) and 26,032 test digits; the reference crops
    # (padding 2) without flipping digits.
    'svhn': DatasetSpec(
        'svhn', (32, 32, 3), 10, (109.9 / 255, 109.7 / 255, 113.8 / 255),
        (50.1 / 255, 50.6 / 255, 50.8 / 255), 'crop', 'svhn_cropped'),
}
