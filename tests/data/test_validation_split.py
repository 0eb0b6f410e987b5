"""The validation split: stratified by class with the largest remainders, disjoint from the
training examples left, the same for every run, and refused in one line when it cannot hold every
class on both sides."""
import numpy as np
import pytest

from robust_jax.data import validation_split
from robust_jax.data.arrays import DatasetError, Split


def _split(labels):
  labels = np.asarray(labels, np.int32)
  images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)  # image i holds i
  return Split(images, labels, origin='toy train split')


def test_class_counts_are_proportional_with_the_largest_remainders():
  labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
  assert validation_split.class_counts(labels, 10) == {0: 5, 1: 3, 2: 2}
  # 7 × (50, 30, 20) / 100 = 3.5, 2.1, 1.4: floors 3, 2, 1 and the one left to class 0 (0.5)
  assert validation_split.class_counts(labels, 7) == {0: 4, 1: 2, 2: 1}
  # 3 × (1/3 each): floors 1, 1, 1; 4: one left, equal remainders -> the smallest class index
  assert validation_split.class_counts(np.array([2, 1, 0] * 5), 4) == {0: 2, 1: 1, 2: 1}


def test_the_split_is_disjoint_complete_stratified_and_stable():
  labels = np.array([0, 1, 2, 3] * 25 + [0] * 20)
  train, validation = validation_split.hold_out(_split(labels), 24, num_classes=4)
  held, kept = validation.images.ravel(), train.images.ravel()
  assert len(held) == 24 and len(kept) == 96
  assert not set(held) & set(kept) and set(held) | set(kept) == set(range(120))
  np.testing.assert_array_equal(labels[held], validation.labels)  # labels travel with images
  assert np.all(np.diff(held) > 0) and np.all(np.diff(kept) > 0)  # the training order is kept
  assert np.bincount(validation.labels).tolist() == [9, 5, 5, 5]  # 24 × (45, 25, 25, 25) / 120
  again, _ = validation_split.hold_out(_split(labels), 24, num_classes=4)
  np.testing.assert_array_equal(again.images, train.images)  # a fixed key: the same examples


@pytest.mark.parametrize('size', [1, 99, 100])
def test_a_validation_split_without_every_class_on_both_sides_is_one_line(size):
  with pytest.raises(DatasetError, match=r'^config.dataset.validation_examples=\d+: must be '
                     r'between 2 \(one per class\) and 98 \(the 100 training examples of toy '
                     r'train split less one per class\), or 0 for no validation split$'):
    validation_split.hold_out(_split([0, 1] * 50), size, num_classes=2)
