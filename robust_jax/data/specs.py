"""What robust_jax knows about each supported dataset: shape, classes, normalisation, augmentation.

Text datasets (`modality='text'`) are token ids of a fixed length (`robust_jax.data.text`);
`data.spec_for` fills in their config-dependent facts (sequence length, vocabulary size).
"""
from __future__ import annotations

import dataclasses

__all__ = ['DatasetSpec', 'SPECS']


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Static facts about one classification dataset (images or text).

  `mean` and `std` are per-channel statistics in [0, 1] pixel units; models normalise inside their
  forward pass, so attack epsilons stay in pixel units.
  """

  name: str
  image_shape: tuple[int, ...]  # (H, W, C); text: (L,)
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  default_augmentation: str  # 'none', 'crop' or 'crop_flip' (`pipeline.make_augment_fn`)
  tfds_name: str
  idx_download_hint: str = ''
  modality: str = 'image'  # 'image' or 'text'
  # Text only: image_shape is (L,), the sequence length; vocab_size the embedding-table rows
  # (config.dataset.vocab_size); text_features the TFDS features joined into one text.
  vocab_size: int = 0
  text_features: tuple[str, ...] = ()


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
    # Text: 120,000 / 7,600 AG News headlines + descriptions in 4 topics; 25,000 / 25,000 IMDB
    # reviews, positive or negative. Sequence length and vocabulary size come from the config.
    'ag_news': DatasetSpec('ag_news', (256,), 4, (), (), 'none', 'ag_news_subset',
                           modality='text', text_features=('title', 'description')),
    'imdb': DatasetSpec('imdb', (256,), 2, (), (), 'none', 'imdb_reviews', modality='text',
                        text_features=('text',)),
}
