"""Every dataset's static facts (`data.specs.SPECS`), pinned to their sources; Fashion-MNIST's
normalisation recomputed from the real files.

Nothing else reads these numbers as numbers (a model normalises with whatever it is given), so a
moved statistic, class count or augmentation would go unseen: mutation.toml runs this file for
mutants of code run at import.
"""
import dataclasses
import os

import numpy as np
import pytest

from robust_jax.data import idx
from robust_jax.data.specs import SPECS

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

# name: (image_shape, num_classes, mean, std, default_augmentation, tfds_name, modality,
#        text_features). MNIST: the usual statistics of its training images (PyTorch's MNIST
# example); CIFAR-10/100 and SVHN: the AMP reference code (papers.md section 1.4), with its
# augmentation (crop + flip for CIFAR, crop only for SVHN digits); the text datasets: TFDS's
# names and the features joined into one text, 256 tokens until the config says otherwise.
EXPECTED = {
    'mnist': ((28, 28, 1), 10, (0.1307,), (0.3081,), 'none', 'mnist', 'image', ()),
    'fashion_mnist': ((28, 28, 1), 10, (0.2860,), (0.3530,), 'none', 'fashion_mnist', 'image',
                      ()),
    'cifar10': ((32, 32, 3), 10, (125.3 / 255, 123.0 / 255, 113.9 / 255),
                (63.0 / 255, 62.1 / 255, 66.7 / 255), 'crop_flip', 'cifar10', 'image', ()),
    'cifar100': ((32, 32, 3), 100, (129.3 / 255, 124.1 / 255, 112.4 / 255),
                 (68.2 / 255, 65.4 / 255, 70.4 / 255), 'crop_flip', 'cifar100', 'image', ()),
    'svhn': ((32, 32, 3), 10, (109.9 / 255, 109.7 / 255, 113.8 / 255),
             (50.1 / 255, 50.6 / 255, 50.8 / 255), 'crop', 'svhn_cropped', 'image', ()),
    'ag_news': ((256,), 4, (), (), 'none', 'ag_news_subset', 'text', ('title', 'description')),
    'imdb': ((256,), 2, (), (), 'none', 'imdb_reviews', 'text', ('text',)),
}
FIELDS = ('image_shape', 'num_classes', 'mean', 'std', 'default_augmentation', 'tfds_name',
          'modality', 'text_features')


def test_dataset_specs_are_their_sources():
  assert list(SPECS) == list(EXPECTED)
  for name, spec in SPECS.items():
    assert spec.name == name and spec.vocab_size == 0, name  # text: from the config
    assert tuple(getattr(spec, field) for field in FIELDS) == EXPECTED[name], name
    assert bool(spec.idx_download_hint) == (name in ('mnist', 'fashion_mnist')), name
  with pytest.raises(dataclasses.FrozenInstanceError):
    SPECS['mnist'].num_classes = 11


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason='dataset-fashion-mnist missing')
def test_fashion_mnist_statistics_are_those_of_its_training_images():
  images = idx.read_idx(os.path.join(FASHION_MNIST_DIR, 'train-images-idx3-ubyte.gz')) / 255.0
  spec = SPECS['fashion_mnist']
  np.testing.assert_allclose((images.mean(), images.std()), spec.mean + spec.std, atol=5e-5)
