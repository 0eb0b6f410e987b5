"""Bad data from every source is a one-line DatasetError naming the file, split, index and value.

The checks are shared (`robust_jax.data.arrays`); each case here builds one bad input in tmp_path.
"""
import difflib
import gzip
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from robust_jax import data
from robust_jax.config import defaults as config_defaults
from robust_jax.data import text
from robust_jax.training import loop as train
from tests import helpers


def _fails(load, match):
  """Runs `load()`, which must raise a one-line DatasetError whose message matches `match`."""
  with pytest.raises(data.DatasetError, match=match) as error:
    load()
  assert '\n' not in str(error.value)
  return str(error.value)


# npz ------------------------------------------------------------------------------------------


def _npz(tmp_path, **changes):
  """A valid 10-class Fashion-MNIST-shaped npz (8 train, 4 test images) with `changes` applied;
  returns the dataset config that reads it."""
  rng = np.random.default_rng(0)
  arrays = {'x_train': rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
            'y_train': rng.integers(0, 10, 8), 'x_test': rng.integers(0, 256, (4, 28, 28, 1),
                                                                      dtype=np.uint8),
            'y_test': np.arange(4)}
  path = str(tmp_path / 'data.npz')
  np.savez(path, **(arrays | changes))
  config = config_defaults.default_config().dataset
  config.update(source='npz', path=path)
  return config


NPZ_TRAIN = r"^npz file '.*data.npz', train split \(x_train, y_train\): "
NPZ_TEST = r"^npz file '.*data.npz', test split \(x_test, y_test\): "
CLASSES = r'labels must be class indices, integers in \[0, 10\)$'


@pytest.mark.parametrize('changes, match', [
    ({'y_test': np.arange(4) + 0.7},
     NPZ_TEST + r'label 0.7 at index 0 is not an integer; ' + CLASSES),
    ({'y_test': np.array([0, 1, np.nan, 3])}, NPZ_TEST + 'label nan at index 2 is not an integer'),
    ({'y_test': np.array([0, 1, 2, 2**32 + 3])},
     NPZ_TEST + r'label 4294967299 at index 3 is outside \[0, 10\); ' + CLASSES),
    ({'y_test': np.array([0, -1, 2, 3])}, NPZ_TEST + r'label -1 at index 1 is outside \[0, 10\)'),
    ({'y_test': np.array([0, 1, 10, 3])}, NPZ_TEST + r'label 10 at index 2 is outside \[0, 10\)'),
    ({'y_test': np.array([0., 1., np.inf, 3.])}, NPZ_TEST + r'label inf at index 2 is outside'),
    ({'y_test': np.array([True, False, True, True])},
     NPZ_TEST + 'labels have dtype bool; ' + CLASSES),
    ({'y_test': np.array(['0', '1', '2', '3'])}, NPZ_TEST + 'labels have dtype <U1; ' + CLASSES),
    ({'y_test': np.zeros((4, 1), np.int64)},
     NPZ_TEST + r'labels have shape \(4, 1\), expected \(4,\), one per example$'),
    ({'y_train': np.zeros(7, np.int64)}, NPZ_TRAIN + r'labels have shape \(7,\), expected \(8,\)'),
    ({'x_test': np.zeros((0, 28, 28), np.uint8), 'y_test': np.zeros(0, np.int64)},
     NPZ_TEST + 'no examples; every split needs at least one$'),
    ({'x_train': np.zeros((0, 28, 28, 1), np.uint8), 'y_train': np.zeros(0, np.int64)},
     NPZ_TRAIN + 'no examples'),
    ({'x_train': np.full((8, 28, 28), 0.5, np.float32)},
     NPZ_TRAIN + r'images have dtype float32, expected uint8 pixels in \[0, 255\]; convert them '
     r'first, e.g. np.round\(x \* 255\).astype\(np.uint8\) for floats in \[0, 1\]$'),
    ({'x_train': np.full((8, 28, 28), 200.0)}, NPZ_TRAIN + 'images have dtype float64'),
    ({'x_train': np.zeros((8, 28, 28), np.int64)}, NPZ_TRAIN + 'images have dtype int64'),
    ({'x_train': np.zeros((8, 784), np.uint8)},
     NPZ_TRAIN + r'images have shape \(8, 784\), expected \(N, H, W, C\)$'),
    ({'x_test': np.zeros((4, 28, 28, 3), np.uint8)},
     NPZ_TEST + r'examples have shape \(28, 28, 3\), expected \(28, 28, 1\) for fashion_mnist; '
     'set config.dataset.name to the dataset the data holds$'),
])
def test_bad_npz_arrays(tmp_path, changes, match):
  _fails(lambda: data.load_splits(_npz(tmp_path, **changes)), match)


def test_integral_float_labels_are_read_as_int32(tmp_path):
  splits = data.load_splits(_npz(tmp_path, y_test=np.array([0., 1., 2., 9.], np.float32)))
  assert splits.test.labels.dtype == np.int32
  np.testing.assert_array_equal(splits.test.labels, [0, 1, 2, 9])


NPZ_REMEDY = r'it must hold x_train, y_train, x_test, y_test \(write it with np.savez\)$'


def _damage_npz(tmp_path, how):
  config = _npz(tmp_path)
  if how == 'text':
    with open(config.path, 'w') as f:
      f.write('not an archive\n')
  elif how == 'truncated':
    with open(config.path, 'rb') as f:
      content = f.read()
    with open(config.path, 'wb') as f:
      f.write(content[:len(content) // 2])
  elif how == 'npy':
    with open(config.path, 'wb') as f:
      np.save(f, np.zeros(3))
  elif how == 'pickled':
    np.savez(config.path, x_train=np.array([{}], object), y_train=0, x_test=0, y_test=0)
  return config


@pytest.mark.parametrize('how, cause', [
    ('text', r"not a zip archive but starts with b'not an' \(an .npz file is a zip of .npy "
     r'files\)'),
    ('npy', r"not a zip archive but starts with b'\\x93NUMPY' \(.*\)"),
    ('truncated', r'cannot read this npz archive \(File is not a zip file\)'),
    ('pickled', r'cannot read this npz archive \(Object arrays cannot be loaded when '
     r'allow_pickle=False\)'),
])
def test_damaged_npz_files(tmp_path, how, cause):
  config = _damage_npz(tmp_path, how)
  _fails(lambda: data.load_splits(config), rf'^.*data.npz: {cause}; ' + NPZ_REMEDY)


def test_an_npz_path_that_is_a_folder(tmp_path):
  config = _npz(tmp_path)
  config.path = str(tmp_path)
  _fails(lambda: data.load_splits(config),
         r'cannot read this npz archive \(\[Errno 21\] Is a directory: .*\); ' + NPZ_REMEDY)


@pytest.mark.parametrize('test_labels, match', [
    (lambda y: y + 0.7, NPZ_TEST + r'label \d.7 at index 0 is not an integer'),
    (lambda y: y + 2**32, NPZ_TEST + r'label 429496729\d at index 0 is outside \[0, 10\)'),
    (lambda y: y[:0], NPZ_TEST + r'labels have shape \(0,\), expected \(64,\)'),
])
def test_bad_labels_stop_training_before_it_starts(tmp_path, test_labels, match):
  path = str(tmp_path / 'data.npz')
  x, y = helpers.quadrant_images(64, 0)
  np.savez(path, x_train=x, y_train=y, x_test=x, y_test=test_labels(y.astype(np.int64)))
  workdir = tmp_path / 'run'
  _fails(lambda: train.train_and_evaluate(helpers.tiny_config(path), str(workdir)), match)
  assert not list(workdir.glob('checkpoints/*'))


def test_an_empty_test_split_stops_training_instead_of_nan_accuracy(tmp_path):
  path = str(tmp_path / 'data.npz')
  x, y = helpers.quadrant_images(64, 0)
  np.savez(path, x_train=x, y_train=y, x_test=x[:0], y_test=y[:0])
  _fails(lambda: train.train_and_evaluate(helpers.tiny_config(path), str(tmp_path / 'run')),
         NPZ_TEST + 'no examples')


# IDX ------------------------------------------------------------------------------------------

IDX_NAMES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte',
             't10k-labels-idx1-ubyte')


def _idx_bytes(array):
  return bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, '>u4').tobytes() + (
      array.astype(np.uint8).tobytes())


def _idx_folder(tmp_path, **contents):
  """A valid IDX folder (6 train, 4 test images) with `contents` (name -> bytes written as
  NAME.gz, gzipped) replacing files; returns the dataset config that reads it."""
  rng = np.random.default_rng(0)
  files = {'train-images-idx3-ubyte': _idx_bytes(rng.integers(0, 256, (6, 28, 28))),
           'train-labels-idx1-ubyte': _idx_bytes(rng.integers(0, 10, 6)),
           't10k-images-idx3-ubyte': _idx_bytes(rng.integers(0, 256, (4, 28, 28))),
           't10k-labels-idx1-ubyte': _idx_bytes(np.arange(4))}
  for name, content in (files | contents).items():
    with gzip.open(tmp_path / (name + '.gz'), 'wb') as f:
      f.write(content)
  config = config_defaults.default_config().dataset
  config.path = str(tmp_path)
  return config


IDX_REMEDY = ('replace it with a fresh copy; on Debian/Ubuntu: apt-get install '
              r'dataset-fashion-mnist \(files land in /usr/share/datasets/fashion-mnist\)$')


@pytest.mark.parametrize('contents, match', [
    ({'t10k-labels-idx1-ubyte': _idx_bytes(np.array([0, 1, 10, 3]))},
     r"^IDX folder '.*', test split: label 10 at index 2 is outside \[0, 10\); " + CLASSES),
    ({'t10k-labels-idx1-ubyte': _idx_bytes(np.arange(3))},
     r"^IDX folder '.*', test split: labels have shape \(3,\), expected \(4,\), one per example$"),
    ({'t10k-images-idx3-ubyte': _idx_bytes(np.zeros((0, 28, 28))),
      't10k-labels-idx1-ubyte': _idx_bytes(np.zeros(0))},
     r"^IDX folder '.*', test split: no examples; every split needs at least one$"),
    ({'t10k-images-idx3-ubyte': _idx_bytes(np.zeros((4, 32, 32)))},
     r"test split: examples have shape \(32, 32, 1\), expected \(28, 28, 1\) for fashion_mnist"),
    ({'train-images-idx3-ubyte': _idx_bytes(np.zeros(6))},
     r'train-images-idx3-ubyte.gz: IDX array of shape \(6,\), expected 3 dimensions; is it another '
     r'of the four files\?$'),
    ({'train-labels-idx1-ubyte': _idx_bytes(np.zeros((6, 28, 28)))},
     r'train-labels-idx1-ubyte.gz: IDX array of shape \(6, 28, 28\), expected 1 dimension;'),
    ({'train-labels-idx1-ubyte': _idx_bytes(np.zeros(6))[:-1]},
     r'train-labels-idx1-ubyte.gz: header says shape \(6,\) but holds 5 values; ' + IDX_REMEDY),
    ({'train-labels-idx1-ubyte': _idx_bytes(np.zeros(6)) + b'\0'},
     r'train-labels-idx1-ubyte.gz: header says shape \(6,\) but holds 7 values; ' + IDX_REMEDY),
    ({'train-images-idx3-ubyte': _idx_bytes(np.zeros((6, 28, 28)))[:9]},
     r'train-images-idx3-ubyte.gz: IDX header of 3 dimensions cut off after 9 bytes; '
     + IDX_REMEDY),
    ({'train-images-idx3-ubyte': b'text,label\nhello,1\n'},
     r'train-images-idx3-ubyte.gz: not an IDX file of unsigned bytes \(magic 74657874, expected '
     r'000008 then the number of dimensions\); ' + IDX_REMEDY),
    ({'train-images-idx3-ubyte': bytes([0, 0, 0x0D, 3]) + _idx_bytes(np.zeros((6, 28, 28)))[4:]},
     r'not an IDX file of unsigned bytes \(magic 00000d03,'),
    ({'train-images-idx3-ubyte': b''},
     r'not an IDX file of unsigned bytes \(magic none: empty file, expected'),
    ({'train-images-idx3-ubyte': bytes([1, 0, 0x08, 3]) + _idx_bytes(np.zeros((6, 28, 28)))[4:]},
     r'not an IDX file of unsigned bytes \(magic 01000803,'),  # each magic byte is checked
    ({'train-images-idx3-ubyte': bytes([0, 0, 0x08, 0])},  # 4 bytes: a whole header, 0-d
     r'train-images-idx3-ubyte.gz: header says shape \(\) but holds 0 values; ' + IDX_REMEDY),
    ({'train-images-idx3-ubyte': bytes([0, 0, 0x08, 3]) + np.array([2**31, 2**31, 4],
                                                                   '>u4').tobytes()},
     r'train-images-idx3-ubyte.gz: header says shape \(2147483648, 2147483648, 4\) but holds 0 '
     r'values; ' + IDX_REMEDY),
])
def test_bad_idx_files(tmp_path, contents, match):
  _fails(lambda: data.load_splits(_idx_folder(tmp_path, **contents)), match)


def _flip(content, position):
  return content[:position] + bytes([content[position] ^ 0xFF]) + content[position + 1:]


@pytest.mark.parametrize('damage, cause', [
    (lambda gz: gz[:len(gz) // 2],
     'Compressed file ended before the end-of-stream marker was reached'),
    (lambda gz: b'plain bytes, not gzip', r"Not a gzipped file \(b'pl'\)"),
    (lambda gz: _flip(gz, 10), 'Error -3 while decompressing data: invalid block type'),
    (lambda gz: _flip(gz, len(gz) // 2), 'CRC check failed'),
])
def test_damaged_idx_gzip_files(tmp_path, damage, cause):
  config = _idx_folder(tmp_path)
  path = tmp_path / 'train-images-idx3-ubyte.gz'
  path.write_bytes(damage(gzip.compress(gzip.decompress(path.read_bytes()))))  # header: 10 bytes
  _fails(lambda: data.load_splits(config),
         rf'train-images-idx3-ubyte.gz: damaged or truncated gzip file \({cause}.*\); '
         + IDX_REMEDY)


# TFDS images ----------------------------------------------------------------------------------


def _tfds_records(split_records):
  """`as_data_source_fn` for `tfds.testing.mock_data`: the records of each split."""
  return lambda builder, split, **kwargs: split_records[split]


def _cifar_records(num, label=0, image_dtype=np.uint8):
  return [{'image': np.zeros((32, 32, 3), image_dtype), 'label': np.int64(label)}] * num


@pytest.mark.parametrize('records, match', [
    ({'train': _cifar_records(3), 'test': _cifar_records(2, label=10)},
     r"^TFDS cifar10 in '.*', test split: label 10 at index 0 is outside \[0, 10\); " + CLASSES),
    ({'train': _cifar_records(3), 'test': []},
     r"^TFDS cifar10 in '.*', test split: no examples; every split needs at least one$"),
    ({'train': _cifar_records(3, image_dtype=np.float32), 'test': _cifar_records(2)},
     r"^TFDS cifar10 in '.*', train split: images have dtype float32, expected uint8"),
    ({'train': [{'image': np.zeros((32, 32, 3), np.uint8), 'label': np.float32(1.5)}],
      'test': _cifar_records(2)}, 'train split: label 1.5 at index 0 is not an integer'),
])
def test_bad_tfds_image_records(records, match):
  config = config_defaults.default_config().dataset
  config.update(name='cifar10', source='tfds', path='')
  with tfds.testing.mock_data(as_data_source_fn=_tfds_records(records)):
    _fails(lambda: data.load_splits(config), match)


# Text: CSV, TFDS and the cache ----------------------------------------------------------------

TRAIN_CSV = 'text,label\nStocks rise,2\nThe match,1\nStocks fall,2\n'


def _text_config(tmp_path, test_csv='text,label\nStocks and bonds,2\n', **overrides):
  folder = tmp_path / 'csv'
  folder.mkdir(exist_ok=True)
  (folder / 'train.csv').write_text(TRAIN_CSV)
  (folder / 'test.csv').write_text(test_csv)
  config = config_defaults.default_config().dataset
  config.update(dict(name='ag_news', source='csv', path=str(folder),
                     cache_dir=str(tmp_path / 'cache'), max_length=6, vocab_size=8) | overrides)
  return config


@pytest.mark.parametrize('test_csv, match', [
    ('text,label\n', r"^CSV file '.*test.csv': no examples; every split needs at least one$"),
    ('', r"test.csv: header None: missing column 'text'; the file needs columns text,label$"),
    ('text,label\n"Stocks, 2\n' + 'and bonds,1\n' * 20_000,
     r'test.csv: not readable as CSV from line 2 on \(field larger than field limit '
     r'\(131072\)\); a field that opens a double quote must close it$'),
    ('"text,label\n' + 'Stocks,2\n' * 20_000,
     r'test.csv: not readable as CSV from line 1 on \(field larger than field limit'),
    ('text,label\nStocks and bonds\n',
     r"test.csv row 1: label=None: must be an integer in \[0, 4\)$"),
    ('text,label\n,1\n', 'test.csv row 1: empty text; give every row a text or remove the row$'),
    ('text,label\nStocks and bonds,0_3\n',
     r"test.csv row 1: label='0_3': must be an integer in \[0, 4\)$"),
])
def test_bad_csv_files(tmp_path, test_csv, match):
  _fails(lambda: data.load_splits(_text_config(tmp_path, test_csv)), match)


def _text_records(*labels, title='Stocks rise'):
  return [{'title': title, 'description': '', 'label': label} for label in labels]


@pytest.mark.parametrize('records, match', [
    ({'train': _text_records(0, 1), 'test': _text_records(4)},
     r"^TFDS ag_news_subset in '.*', test split: label 4 at index 0 is outside \[0, 4\); labels "
     r'must be class indices, integers in \[0, 4\)$'),
    ({'train': _text_records(0, np.float32(1.5)), 'test': _text_records(1)},
     r'train split: label 1.5 at index 1 is not an integer'),
    ({'train': _text_records(0, 2 ** 32 + 1), 'test': _text_records(1)},
     r'train split: label 4294967297 at index 1 is outside \[0, 4\)'),
    ({'train': _text_records(0), 'test': []}, 'test split: no examples'),
    ({'train': _text_records(0) + _text_records(1, title=' '), 'test': _text_records(1)},
     r"^TFDS ag_news_subset in '.*', train split: example 1 has an empty text; every example needs "
     'words$'),
])
def test_bad_tfds_text_records(tmp_path, records, match):
  config = _text_config(tmp_path, source='tfds', path='')
  with tfds.testing.mock_data(as_data_source_fn=_tfds_records(records)):
    _fails(lambda: data.load_splits(config), match)


def _cache_files(tmp_path):
  cache = tmp_path / 'cache'
  [ids] = [cache / f for f in os.listdir(cache) if f.endswith('.npz')]
  return ids, ids.with_suffix('.vocab.txt')


def _rewrite_cache(ids_path, **changes):
  with np.load(ids_path) as arrays:
    np.savez(ids_path, **(dict(arrays) | changes))


def test_a_damaged_cache_file_is_refused_and_kept(tmp_path):
  config = _text_config(tmp_path)
  data.load_splits(config)
  ids, vocabulary = _cache_files(tmp_path)
  content = ids.read_bytes()
  ids.write_bytes(content[:len(content) // 2])
  _fails(lambda: data.load_splits(config),
         rf'^{ids}: cannot read this npz archive \(File is not a zip file\); delete it and '
         rf'{vocabulary} to tokenise again$')
  assert ids.read_bytes() == content[:len(content) // 2]


def test_a_cache_file_missing_an_array_is_refused(tmp_path):
  config = _text_config(tmp_path)
  data.load_splits(config)
  ids, _ = _cache_files(tmp_path)
  with np.load(ids) as arrays:
    np.savez(ids, **{k: v for k, v in arrays.items() if k != 'test_lengths'})
  _fails(lambda: data.load_splits(config),
         r"^.*npz: missing arrays \['test_lengths'\]; delete it and .* to tokenise again$")


def test_a_cache_file_from_other_settings_is_refused(tmp_path):
  config = _text_config(tmp_path)
  data.load_splits(config)
  ids, vocabulary = _cache_files(tmp_path)
  other = _text_config(tmp_path, max_length=5)
  data.load_splits(other)
  [other_ids] = [p for p in (tmp_path / 'cache').glob('*.npz') if p != ids]
  shutil.copy(ids, other_ids)  # a cache copied under another entry's name
  shutil.copy(vocabulary, other_ids.with_suffix('.vocab.txt'))
  _fails(lambda: data.load_splits(other),
         r'^text cache .*npz was built from other data or settings \(\{.*"max_length": 6.*\}\); '
         r'delete it and .*vocab.txt to tokenise again$')


@pytest.mark.parametrize('changes, match', [
    (lambda a: {'test_lengths': a['test_lengths'] * 0, 'test_tokens': a['test_tokens'] * 0},
     r"^text cache '.*npz', test split: length 0 at index 0 is outside \[1, 7\); delete the cache "
     'files to tokenise again$'),
    (lambda a: {'test_labels': a['test_labels'] - 5},
     r"^text cache '.*npz', test split: label -3 at index 0 is outside \[0, 4\)"),
    (lambda a: {'train_lengths': a['train_lengths'].astype(np.int64)},
     r"train split: lengths must be int32 \(3,\), got int64 \(3,\)$"),
    (lambda a: {'train_tokens': a['train_tokens'][:, :5], 'train_lengths': np.full(3, 2, np.int32)},
     r"train split: examples have shape \(5,\), expected \(6,\) for ag_news"),
])
def test_a_cache_with_bad_arrays_is_refused(tmp_path, changes, match):
  config = _text_config(tmp_path)
  data.load_splits(config)
  ids, _ = _cache_files(tmp_path)
  with np.load(ids) as arrays:
    _rewrite_cache(ids, **changes(arrays))
  _fails(lambda: data.load_splits(config), match)


def test_token_ids_outside_the_vocabulary_are_refused():
  split = text.TextSplit(np.array([[2, 8, 0]], np.int32), np.zeros(1, np.int32),
                         np.array([2], np.int32), origin='somewhere')
  spec = data.spec_for(_text_config_dict(max_length=3, vocab_size=8))
  _fails(lambda: split.checked(spec),  # id 8 = the vocabulary size: the first one outside
         r'^somewhere: token id 8 at index 0,1 is outside \[0, 8\); delete the cache files to '
         'tokenise again$')


def _text_config_dict(**overrides):
  config = config_defaults.default_config().dataset
  config.update(dict(name='ag_news', source='csv') | overrides)
  return config


# every source ---------------------------------------------------------------------------------


def test_a_test_split_that_is_the_training_split_is_refused(tmp_path):
  rng = np.random.default_rng(0)
  x, y = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8), rng.integers(0, 10, 8)
  _fails(lambda: data.load_splits(_npz(tmp_path, x_test=x, y_test=y, x_train=x, y_train=y)),
         NPZ_TEST + r"the test split is the training split \(npz file '.*data.npz', train split "
         r'\(x_train, y_train\) holds the same images and labels\); test accuracy would measure '
         'memorisation: give held-out test data$')
  folder = tmp_path / 'idx'
  folder.mkdir()
  config = _idx_folder(folder)
  for name in ('images-idx3-ubyte.gz', 'labels-idx1-ubyte.gz'):
    os.remove(folder / f't10k-{name}')
    os.symlink(folder / f'train-{name}', folder / f't10k-{name}')
  _fails(lambda: data.load_splits(config),
         r"^IDX folder '.*', test split: the test split is the training split \(IDX folder '.*', "
         r'train split holds the same images and labels\)')
  data.load_splits(_npz(tmp_path, x_test=x, y_test=(y + 1) % 10, x_train=x, y_train=y))
  data.load_splits(_npz(tmp_path, x_test=x[::-1], y_test=y[::-1], x_train=x, y_train=y))


def test_a_csv_file_with_a_byte_order_mark_is_read(tmp_path):
  splits = data.load_splits(_text_config(tmp_path, '\ufefftext,label\nStocks and bonds,2\n'))
  assert splits.test.labels.tolist() == [2]


def test_an_npz_path_that_is_a_fifo_is_refused_without_blocking(tmp_path):
  config = _npz(tmp_path)
  os.remove(config.path)
  os.mkfifo(config.path)
  _fails(lambda: data.load_splits(config),
         r'data.npz: not a regular file but a FIFO, socket or device \(reading it could block '
         r'forever\); ' + NPZ_REMEDY)


def test_training_labels_of_one_class_are_refused(tmp_path):
  path = str(tmp_path / 'one_class.npz')
  images = np.zeros((8, 28, 28, 1), np.uint8)
  np.savez(path, x_train=images, y_train=np.full(8, 3), x_test=images[:4] + 1,
           y_test=np.arange(4))
  config = config_defaults.default_config().dataset
  config.update(source='npz', path=path)
  with pytest.raises(data.DatasetError, match=r": every training label is 3; a classifier needs "
                     r"examples of at least two classes$"):
    data.load_splits(config)


# The dataset section's keys: default and accepted range, pinned. The config checks are built from
# `data.SCHEMA` and the defaults from `config_defaults`, so no other test sees a bound that moved;
# a change is made here on purpose (mutation.toml runs this for mutants of code run at import).
DATASET_SECTION = """\
  name = 'fashion_mnist': must be one of: mnist, fashion_mnist, cifar10, cifar100, svhn, ag_news,
    imdb
  source = 'idx': must be one of: idx, tfds, npz, csv
  path = '/usr/share/datasets/fashion-mnist': any string
  download = False: must be True or False
  augmentation = 'default': must be one of: default, none, crop, crop_flip
  crop_padding = 4: must be >= 0 and <= 16
  crop_fill = 0: must be >= 0 and <= 255
  autoaugment = 'none': must be one of: none, cifar10, svhn
  cutout_length = 0: must be >= 0
  validation_examples = 0: must be >= 0
  max_length = 256: must be >= 1
  vocab_size = 50000: must be >= 3 (<pad> and <unk> take 2 ids: vocab_size 2 makes every word <unk>)
  min_count = 1: must be >= 1
  remove_stop_words = False: must be True or False
  csv_files = ('train.csv', 'test.csv'): must be two file names, (train file, test file);
    duplicates rejected, reversed accepted, one more rejected, one fewer rejected
  cache_dir = '': any string
"""


def test_dataset_section_has_the_pinned_defaults_and_ranges():
  section = config_defaults.default_config().dataset
  actual = [line for key, field in data.SCHEMA.items()
            for line in helpers.describe_field(key, field, section[key])]
  assert actual == DATASET_SECTION.splitlines(), '\n'.join(difflib.unified_diff(
      DATASET_SECTION.splitlines(), actual, 'pinned', 'code', lineterm=''))
