"""The three data sources (IDX, npz, TFDS on mock data) and the on-device pipeline."""
import gzip
import os
import socket
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robust_jax import data, sharding
from robust_jax.config import defaults as config_defaults
from robust_jax.data import idx, pipeline, tfds_source
from tests import helpers

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, '>u4').tobytes()
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_idx_roundtrip(tmp_path):
  rng = np.random.default_rng(0)
  arrays = {'train-images-idx3-ubyte': rng.integers(0, 256, (6, 28, 28)),
            'train-labels-idx1-ubyte': rng.integers(0, 10, 6),
            't10k-images-idx3-ubyte': rng.integers(0, 256, (4, 28, 28)),
            't10k-labels-idx1-ubyte': rng.integers(0, 10, 4)}
  for name, array in arrays.items():
    _write_idx(os.path.join(tmp_path, name + '.gz'), array)
  splits = idx.load_idx_folder(str(tmp_path))
  chex.assert_shape(splits.train.images, (6, 28, 28, 1))
  np.testing.assert_array_equal(splits.train.images[..., 0], arrays['train-images-idx3-ubyte'])
  np.testing.assert_array_equal(splits.test.labels, arrays['t10k-labels-idx1-ubyte'])


def test_idx_rejects_wrong_magic(tmp_path):
  path = os.path.join(tmp_path, 'bad.gz')
  with gzip.open(path, 'wb') as f:
    f.write(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b'\0' * 4)
  with pytest.raises(data.DatasetError, match='not an IDX file of unsigned bytes'):
    idx.read_idx(path)


def test_missing_idx_folder_says_how_to_get_it(tmp_path):
  config = config_defaults.default_config().dataset
  config.path = str(tmp_path)
  with pytest.raises(data.DatasetError, match='apt-get install dataset-fashion-mnist'):
    data.load_splits(config)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_DIR), reason='dataset-fashion-mnist missing')
def test_real_fashion_mnist_from_idx():
  splits = data.load_splits(config_defaults.default_config().dataset)
  assert len(splits.train) == 60000 and len(splits.test) == 10000
  np.testing.assert_array_equal(np.bincount(splits.test.labels), [1000] * 10)
  assert splits.train.images.dtype == np.uint8 and splits.train.images.max() == 255


def test_npz_source(tiny_npz):
  config = config_defaults.default_config().dataset
  config.update(source='npz', path=tiny_npz)
  splits = data.load_splits(config)
  chex.assert_shape(splits.train.images, (256, 28, 28, 1))
  assert splits.test.labels.dtype == np.int32


def test_npz_missing_arrays(tmp_path):
  path = str(tmp_path / 'x.npz')
  np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
  with pytest.raises(data.DatasetError, match=r"missing arrays \['y_train', 'x_test', 'y_test'\]"):
    data.npz.load_npz(path)


def test_wrong_image_shape_is_reported(tmp_path):
  path = str(tmp_path / 'x.npz')
  np.savez(path, x_train=np.zeros((2, 32, 32, 3), np.uint8), y_train=np.zeros(2),
           x_test=np.zeros((2, 32, 32, 3), np.uint8), y_test=np.zeros(2))
  config = config_defaults.default_config().dataset
  config.update(source='npz', path=path)
  with pytest.raises(data.DatasetError, match=r'have shape \(32, 32, 3\), expected \(28, 28, 1\)'):
    data.load_splits(config)


def test_tfds_source_on_mock_data():
  config = config_defaults.default_config().dataset
  config.update(name='cifar10', source='tfds', path='')
  with helpers.mock_tfds(12):
    splits = data.load_splits(config)
  chex.assert_shape(splits.train.images, (12, 32, 32, 3))
  assert splits.train.images.dtype == np.uint8
  assert 0 <= splits.train.labels.min() and splits.train.labels.max() < 10


@pytest.mark.parametrize('name', ['mnist', 'cifar10'])
def test_tfds_unprepared_is_one_line_with_the_command(tmp_path, name):
  config = config_defaults.default_config().dataset
  config.update(name=name, source='tfds', path=str(tmp_path))
  start = time.perf_counter()
  with pytest.raises(data.DatasetError) as error:
    data.load_splits(config)
  assert time.perf_counter() - start < 5
  message = str(error.value)
  assert '\n' not in message and message.startswith(
      f"TFDS dataset '{name}' is not prepared as array_record in '{tmp_path}'")
  assert f'tfds build {name} --data_dir={tmp_path} --file_format=array_record' in message
  assert isinstance(error.value.__cause__, KeyError)  # what TFDS raises: no splits


def test_tfds_download_without_network_fails_fast(tmp_path, monkeypatch):
  # A '.invalid' host never resolves (RFC 2606), so this holds on hosts with internet too.
  monkeypatch.setitem(tfds_source.DOWNLOAD_URLS, 'cifar10', 'https://robust-jax-test.invalid/x')
  config = config_defaults.default_config().dataset
  config.update(name='cifar10', source='tfds', path=str(tmp_path), download=True)
  start = time.perf_counter()
  with pytest.raises(data.DatasetError) as error:
    data.load_splits(config)
  assert time.perf_counter() - start < 10
  message = str(error.value)
  assert '\n' not in message and message.startswith(
      'config.dataset.download=True: cannot connect to robust-jax-test.invalid:443')
  assert f'tfds build cifar10 --data_dir={tmp_path} --file_format=array_record' in message


def test_connection_check_sees_an_open_and_a_closed_port():
  with socket.create_server(('127.0.0.1', 0)) as server:
    port = server.getsockname()[1]
    assert tfds_source._can_connect('127.0.0.1', port, 1.0)
  assert not tfds_source._can_connect('127.0.0.1', port, 1.0)


def test_connection_check_goes_to_the_proxy(monkeypatch):
  for variable in ('http_proxy', 'https_proxy', 'no_proxy'):
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv(variable.upper(), raising=False)
  monkeypatch.setenv('https_proxy', 'http://proxy.example:3128')
  assert tfds_source._connection_address(tfds_source.DOWNLOAD_URLS['cifar10']) == (
      'proxy.example', 3128)
  assert tfds_source._connection_address(tfds_source.DOWNLOAD_URLS['fashion_mnist']) == (
      'fashion-mnist.s3-website.eu-central-1.amazonaws.com', 80)


def test_every_tfds_image_dataset_has_a_download_url():
  # Text datasets are never downloaded here (`tfds_text_source`: download=True is an error).
  assert {spec.tfds_name for spec in data.SPECS.values()
          if spec.modality == 'image'} == set(tfds_source.DOWNLOAD_URLS)


def test_epoch_batches_are_a_permutation_and_device_count_independent(eight_devices):
  images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
  split = data.Split(images, np.arange(100, dtype=np.int32))
  results = []
  for devices in (eight_devices[:1], eight_devices):
    mesh = sharding.make_mesh(devices)
    device_split = pipeline.put_split(split, mesh)
    fn = pipeline.make_epoch_batches_fn(mesh, device_split.num_examples, 16)
    batches = fn(device_split.images, device_split.labels, jax.random.key(3))
    chex.assert_shape(batches['image'], (6, 16, 1, 1, 1))
    results.append(np.asarray(batches['label']))
  np.testing.assert_array_equal(results[0], results[1])
  assert len(set(results[0].ravel())) == 96  # 96 distinct examples, padding rows never drawn
  assert results[0].max() < 100


def test_eval_batches_cover_split_once(eight_devices):
  split = data.Split(np.zeros((21, 2, 2, 1), np.uint8), np.arange(21, dtype=np.int32))
  batches = pipeline.make_eval_batches(split, 5, sharding.make_mesh(eight_devices))
  chex.assert_shape(batches['label'], (3, 8, ))  # batch rounded up to 8 devices
  assert float(batches['mask'].sum()) == 21
  np.testing.assert_array_equal(np.asarray(batches['label']).ravel()[:21], np.arange(21))


def test_random_crop_flip_keeps_pixels_and_varies_per_example():
  images = jnp.tile(jnp.arange(16.0).reshape(1, 4, 4, 1), (64, 1, 1, 1))
  out = pipeline.random_crop_flip(images, jax.random.key(0), padding=1)
  chex.assert_shape(out, (64, 4, 4, 1))
  values = set(np.unique(np.asarray(out)).tolist())
  assert values <= set(range(16)) | {0.0}
  assert len({np.asarray(o).tobytes() for o in out}) > 5
