"""The data pipeline's choices where every formula stays right (#28): boundaries of its checks,
its defaults, the validation split's rounding and seed, where caches and TFDS data are looked for,
and the network probe's thread. Each test kills a mutant the rest of the suite let live
(experiments/results/mutation/README.md, part `data`)."""
import dataclasses
import os
import socket
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import data, sharding
from robust_jax.config import defaults as config_defaults
from robust_jax.data import csv_source, pipeline, text, tfds_source, tfds_text_source
from robust_jax.data import validation_split
from robust_jax.data.arrays import DatasetError, Split, Splits


HELD = [2, 5, 12, 15]  # of labels [0, 1, 2, 3] × 5, one per class (VALIDATION_SEED = 20_200_606)


def _images(n, value=0):
  return np.full((n, 2, 2, 1), value, np.uint8)


# ----------------------------------------------------------------------------- arrays
def test_split_refuses_no_examples_and_names_the_shape_of_one_dimensional_images():
  with pytest.raises(DatasetError, match=r'^split: no examples; every split needs at least one$'):
    Split(np.uint8(3), np.zeros(1, np.int32))
  with pytest.raises(DatasetError, match=r'^split: images have shape \(3,\), expected '
                                         r'\(N, H, W, C\)$'):
    Split(np.zeros(3, np.uint8), np.zeros(3, np.int32))


def test_a_single_training_example_is_refused_as_one_class():
  spec = data.SPECS['mnist']
  splits = Splits(Split(np.zeros((1, 28, 28, 1), np.uint8), np.array([3]), origin='one'),
                  Split(np.ones((2, 28, 28, 1), np.uint8), np.array([0, 1]), origin='test'))
  with pytest.raises(DatasetError, match=r'^one: every training label is 3; a classifier needs '):
    splits.checked(spec)


def test_splits_and_their_specs_are_frozen():
  split = Split(_images(2), np.array([0, 1]))
  tokens = text.TextSplit(np.ones((1, 2), np.int32), np.zeros(1, np.int32),
                          np.full(1, 2, np.int32))
  settings = text.TokenizerSettings(max_length=4, vocab_size=10, min_count=1,
                                    remove_stop_words=False)
  device_split = pipeline.DeviceSplit(jnp.zeros(1), jnp.zeros(1), 1)
  for frozen, field in ((split, 'labels'), (Splits(split, split), 'test'), (tokens, 'lengths'),
                        (settings, 'vocab_size'), (device_split, 'num_examples'),
                        (text.RawText(['a'], np.zeros(1)), 'texts')):
    with pytest.raises(dataclasses.FrozenInstanceError):
      setattr(frozen, field, None)
  with pytest.raises(TypeError):
    Split(_images(2), np.array([0, 1]), 'an origin given by position')  # keyword only


# ----------------------------------------------------------------------------- sources
def test_a_csv_decoding_error_counts_lines_from_the_first_byte(tmp_path):
  path = tmp_path / 'train.csv'
  path.write_bytes(b'\ntext,label\n\xff,1\n')  # an empty first line: the bad byte is on line 3
  with pytest.raises(DatasetError, match=r"byte b'\\xff' at offset 12 \(line 3\) is not UTF-8"):
    csv_source.read_csv_split(str(path), 4)


@pytest.mark.parametrize('name, hint', [
    ('fashion_mnist', r'on Debian/Ubuntu: apt-get install dataset-fashion-mnist'),
    ('cifar10', r'IDX is the MNIST/Fashion-MNIST format'),  # no hint of its own
])
def test_an_idx_source_without_a_folder_says_where_to_get_one(name, hint):
  config = config_defaults.default_config().dataset
  config.update(name=name, source='idx', path='')
  with pytest.raises(DatasetError, match=rf'^config.dataset.path must name a folder of IDX files '
                                         rf'for {name}; {hint}'):
    data.load_splits(config)


class _Builder:
  """A TFDS builder stand-in: unprepared, whose preparation or reading raises `error`."""

  def __init__(self, error, data_dir):
    self.error, self.data_dir_root = error, data_dir

  def is_prepared(self):
    return False

  def download_and_prepare(self):
    raise self.error

  def as_data_source(self, split):
    raise self.error


def test_preparing_tfds_data_without_tensorflow_says_what_to_install(monkeypatch, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(tfds, 'builder', lambda name, data_dir, file_format: _Builder(
      ImportError('No module named tensorflow'), data_dir))
  monkeypatch.setattr(tfds_source, '_can_connect', lambda *args: True)
  with pytest.raises(DatasetError, match=r"^preparing TFDS dataset 'cifar10' needs TensorFlow: "
                                         r"pip install -e '.\[tfds\]' \(No module named "):
    tfds_source.load_tfds('cifar10', str(tmp_path), download=True)


@pytest.mark.parametrize('error', [KeyError('train'), NotImplementedError('tfrecord'),
                                   FileNotFoundError('missing')])
def test_unprepared_tfds_text_data_gives_the_build_command_in_the_given_folder(
    monkeypatch, tmp_path, error):
  """Nothing prepared (KeyError), prepared as tfrecord (NotImplementedError), files missing:
  each is the one-line build command for the folder the config names."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  folders = []

  def builder(name, data_dir, file_format):
    folders.append(data_dir)
    return _Builder(error, data_dir)

  monkeypatch.setattr(tfds, 'builder', builder)
  with pytest.raises(DatasetError, match=rf"^TFDS dataset 'imdb_reviews' is not prepared as "
                                         rf"array_record in '{tmp_path}'; .* tfds build "):
    tfds_text_source.load_tfds_text('imdb_reviews', str(tmp_path), ('text',), download=False)
  assert folders == [str(tmp_path)]
  tfds_text_source._builder('imdb_reviews', '')
  assert folders[-1] is None  # no folder: TFDS's own default


@pytest.mark.filterwarnings('error::pytest.PytestUnhandledThreadExceptionWarning')
def test_the_network_probe_handles_a_refused_connection_in_its_thread():
  with socket.create_server(('127.0.0.1', 0)) as server:
    port = server.getsockname()[1]
  assert not tfds_source._can_connect('127.0.0.1', port, 1.0)


def test_the_network_probe_never_keeps_the_interpreter_alive(monkeypatch):
  """A name lookup that hangs (socket cannot time it out) is left to a daemon thread."""
  def hang(*args, **kwargs):
    del args, kwargs
    time.sleep(2)
    raise OSError('no answer')

  monkeypatch.setattr(socket, 'create_connection', hang)
  assert not tfds_source._can_connect('hangs.example', 443, 0.05)
  waiting = [t for t in threading.enumerate() if t.is_alive() and not t.daemon
             and t is not threading.main_thread()]
  assert not waiting


# ----------------------------------------------------------------------------- text
def test_text_splits_refuse_int64_token_ids():
  with pytest.raises(DatasetError, match=r'token ids must be int32 \(N, L\), got int64 \(1, 3\)$'):
    text.TextSplit(np.ones((1, 3), np.int64), np.zeros(1, np.int32), np.full(1, 3, np.int32))


def test_the_smallest_vocabulary_is_the_two_special_tokens():
  assert text.build_vocabulary([['a', 'b']], vocab_size=2) == ('<pad>', '<unk>')
  with pytest.raises(ValueError, match=r'^vocab_size=1: must be >= 2'):
    text.build_vocabulary([['a']], vocab_size=1)


def test_the_default_cache_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  assert text.default_cache_dir() == os.path.join(str(tmp_path), 'robust_jax', 'text')
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert text.default_cache_dir() == os.path.join(str(tmp_path), 'home', '.cache', 'robust_jax',
                                                  'text')


def test_a_failed_cache_write_leaves_nothing_behind(tmp_path):
  def interrupted(f):
    f.write(b'half')
    raise KeyboardInterrupt  # not an Exception: BaseException is caught, cleaned up, re-raised

  with pytest.raises(KeyboardInterrupt):
    text._write_atomically(str(tmp_path / 'ids.npz'), interrupted)
  assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- pipeline
def test_crops_pad_with_zeros_by_default_and_the_augmentation_adds_no_cutout():
  images = jnp.full((64, 3, 3, 1), 255, jnp.uint8)
  key = jax.random.key(0)
  for crop in (pipeline.random_crop, pipeline.random_crop_flip):
    assert set(np.unique(crop(images, key, 1)).tolist()) == {0, 255}
  augment = pipeline.make_augment_fn('crop', 1)
  assert set(np.unique(augment(images, key)).tolist()) == {0.0, 1.0}
  np.testing.assert_array_equal(pipeline.make_augment_fn('none', 0)(images, key), 1.0)


def test_epoch_batches_come_sharded_over_the_devices(eight_devices):
  mesh = jax.sharding.Mesh(np.asarray(eight_devices), (sharding.DATA_AXIS,))
  batches = pipeline.make_epoch_batches_fn(mesh, 32, 16)(
      jnp.zeros((32, 2, 2, 1), jnp.uint8), jnp.zeros(32, jnp.int32), jax.random.key(0))
  expected = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, sharding.DATA_AXIS))
  for name in ('image', 'label'):
    assert batches[name].sharding.is_equivalent_to(expected, batches[name].ndim), name


# ----------------------------------------------------------------------------- validation split
def test_the_one_left_goes_to_the_largest_remainder_not_the_largest_class():
  # 10 × (60, 25, 15) / 100 = 6, 2.5, 1.5: floors 6, 2, 1; the one left: remainders 0, .5, .5,
  # a tie broken to class 1 (the largest class, 0, has no remainder).
  labels = np.array([0] * 60 + [1] * 25 + [2] * 15)
  assert validation_split.class_counts(labels, 10) == {0: 6, 1: 3, 2: 1}


@pytest.mark.parametrize('size', [2, 98])
def test_a_validation_split_may_take_one_per_class_or_leave_one_per_class(size):
  split = Split(_images(100), np.array([0, 1] * 50, np.int32), origin='toy')
  train, validation = validation_split.hold_out(split, size, num_classes=2)
  assert len(validation) == size and len(train) == 100 - size
  assert set(validation.labels.tolist()) == set(train.labels.tolist()) == {0, 1}


def test_the_validation_examples_are_a_property_of_the_dataset():
  """Fixed across versions (`VALIDATION_SEED`): the same labels hold out these examples, so a
  validation number compares with every earlier run's."""
  labels = np.array([0, 1, 2, 3] * 5)
  np.testing.assert_array_equal(validation_split.held_out_indices(labels, 4), HELD)
