"""Text data: tokeniser, vocabulary, encoding, CSV and TFDS sources, the cache, bad inputs."""
import hashlib
import os

import numpy as np
import pytest

from robust_jax import data
from robust_jax.config import defaults as config_defaults, schema as config_schema
from robust_jax.data import csv_source, text
from tests import helpers
from tests.helpers import REPO_ROOT

AG_NEWS = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'ag_news')
TRAIN_CSV = ('text,label\n'
             '"Stocks rise, again",2\n'
             '"The match: a <b>great</b> win!",1\n'
             'Stocks fall,2\n'
             '"Two lines\nin one quoted text",0\n')
TEST_CSV = 'text,label\nStocks and bonds,2\nthe the the,3\n'


def _write(folder, name, content, mode='w'):
  path = os.path.join(folder, name)
  with open(path, mode) as f:
    f.write(content)
  return path


def _text_config(folder, cache_dir, **overrides):
  config = config_defaults.default_config().dataset
  config.update(dict(name='ag_news', source='csv', path=str(folder), cache_dir=str(cache_dir),
                     max_length=6, vocab_size=8) | overrides)
  return config


@pytest.fixture
def csv_folder(tmp_path):
  _write(tmp_path, 'train.csv', TRAIN_CSV)
  _write(tmp_path, 'test.csv', TEST_CSV)
  return tmp_path


def test_tokenize_lowercases_and_drops_punctuation_tags_and_optional_stop_words():
  assert text.tokenize("The <br />Match's 2nd half: DON'T stop-now!") == [
      'the', "match's", '2nd', 'half', "don't", 'stop', 'now']
  assert text.tokenize("The <br />Match's 2nd half: DON'T stop-now!",
                       remove_stop_words=True) == ["match's", '2nd', 'half', 'stop']
  assert len(text.STOP_WORDS) == 179 and {'the', "don't", 'won'} <= text.STOP_WORDS


def test_vocabulary_orders_by_count_then_word_and_respects_min_count_and_size():
  tokens = [['b', 'a', 'c', 'a'], ['b', 'd', 'a'], ['e']]
  assert text.build_vocabulary(tokens, 100) == ('<pad>', '<unk>', 'a', 'b', 'c', 'd', 'e')
  assert text.build_vocabulary(tokens, 100, min_count=2) == ('<pad>', '<unk>', 'a', 'b')
  assert text.build_vocabulary(tokens, 4) == ('<pad>', '<unk>', 'a', 'b')
  with pytest.raises(ValueError, match=r'^vocab_size=1: must be >= 2'):
    text.build_vocabulary(tokens, 1)


def test_encode_pads_truncates_maps_unknown_words_and_keeps_empty_texts_as_one_unk():
  vocabulary = ('<pad>', '<unk>', 'a', 'b')
  ids, lengths = text.encode([['a', 'z', 'b'], ['b'] * 5, []], vocabulary, max_length=4)
  np.testing.assert_array_equal(ids, [[2, 1, 3, 0], [3, 3, 3, 3], [1, 0, 0, 0]])
  np.testing.assert_array_equal(lengths, [3, 4, 1])
  assert ids.dtype == lengths.dtype == np.int32


def test_csv_source_reads_quoted_commas_and_newlines(csv_folder):
  raw = csv_source.read_csv_split(str(csv_folder / 'train.csv'), num_classes=4)
  assert raw.texts[0] == 'Stocks rise, again' and raw.texts[3] == 'Two lines\nin one quoted text'
  np.testing.assert_array_equal(raw.labels, [2, 1, 2, 0])


def test_load_splits_tokenises_with_a_train_only_vocabulary(csv_folder, tmp_path):
  splits = data.load_splits(_text_config(csv_folder, tmp_path / 'cache'))
  [vocabulary_file] = [f for f in os.listdir(tmp_path / 'cache') if f.endswith('.vocab.txt')]
  with open(tmp_path / 'cache' / vocabulary_file) as f:
    vocabulary = f.read().split('\n')[:-1]
  # 'stocks' (2 texts) first, then count-1 words alphabetically; 'bonds' (test only) is unknown.
  assert vocabulary == ['<pad>', '<unk>', 'stocks', 'a', 'again', 'fall', 'great', 'in']
  assert splits.train.tokens.shape == (4, 6) and splits.test.tokens.shape == (2, 6)
  np.testing.assert_array_equal(splits.test.tokens, [[2, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
  np.testing.assert_array_equal(splits.test.lengths, [3, 3])
  np.testing.assert_array_equal(splits.test.labels, [2, 3])
  assert data.spec_for(_text_config(csv_folder, '')).image_shape == (6,)


def test_the_cache_is_reused_keyed_by_settings_and_never_overwritten(csv_folder, tmp_path,
                                                                     monkeypatch):
  cache = tmp_path / 'cache'
  first = data.load_splits(_text_config(csv_folder, cache))
  files = sorted(os.listdir(cache))
  contents = {f: (cache / f).read_bytes() for f in files}

  def no_tokenising(*args):
    raise AssertionError('tokenised again although cached')
  monkeypatch.setattr(text, 'tokenize_splits', no_tokenising)
  again = data.load_splits(_text_config(csv_folder, cache))
  np.testing.assert_array_equal(again.train.tokens, first.train.tokens)
  np.testing.assert_array_equal(again.test.lengths, first.test.lengths)
  monkeypatch.undo()
  stop_words = data.load_splits(_text_config(csv_folder, cache, remove_stop_words=True))
  assert stop_words.train.lengths[1] == first.train.lengths[1] - 2  # 'the', 'a' dropped
  assert len(os.listdir(cache)) == 4  # a second entry beside the first
  assert {f: (cache / f).read_bytes() for f in files} == contents


def test_a_vocabulary_file_that_does_not_match_the_cached_ids_is_one_line_and_kept(csv_folder,
                                                                                    tmp_path):
  cache = tmp_path / 'cache'
  data.load_splits(_text_config(csv_folder, cache))
  [vocabulary_file] = [cache / f for f in os.listdir(cache) if f.endswith('.vocab.txt')]
  vocabulary_file.write_text('<pad>\n<unk>\nstocks\n')
  before = {f: (cache / f).read_bytes() for f in os.listdir(cache)}
  with pytest.raises(data.DatasetError, match=r'^text cache mismatch: vocabulary file .* \(3 '
                     r'words, sha256 [0-9a-f]{12}\) is not the one the ids in .*npz were built '
                     r'with \(sha256 [0-9a-f]{12}\); delete both files to tokenise again$'):
    data.load_splits(_text_config(csv_folder, cache))
  assert {f: (cache / f).read_bytes() for f in os.listdir(cache)} == before


def test_a_cached_vocabulary_is_checked_by_its_hash_and_by_the_largest_id(csv_folder, tmp_path):
  """Two words swapped (the size unchanged): the hash refuses it. A vocabulary cut to exactly the
  largest cached id, its hash updated in the cache: id = size is outside, refused."""
  cache = tmp_path / 'cache'
  data.load_splits(_text_config(csv_folder, cache))
  [ids] = [cache / f for f in os.listdir(cache) if f.endswith('.npz')]
  vocabulary_file = ids.with_suffix('.vocab.txt')
  words = vocabulary_file.read_text().splitlines()
  vocabulary_file.write_text('\n'.join(words[:2] + words[3:4] + words[2:3] + words[4:]) + '\n')
  with pytest.raises(data.DatasetError, match=r'^text cache mismatch: .* \(8 words, '):
    data.load_splits(_text_config(csv_folder, cache))
  with np.load(ids) as arrays:
    arrays = dict(arrays)
  largest = int(max(arrays['train_tokens'].max(), arrays['test_tokens'].max()))
  cut = ''.join(word + '\n' for word in words[:largest]).encode()
  vocabulary_file.write_bytes(cut)
  np.savez(ids, **arrays | {'vocabulary_sha256': np.array(hashlib.sha256(cut).hexdigest())})
  with pytest.raises(data.DatasetError, match=rf'^text cache mismatch: .* \({largest} words, '):
    data.load_splits(_text_config(csv_folder, cache))


@pytest.mark.parametrize('content, match', [
    ('words,label\nhello,1\n', r"header \['words', 'label'\]: missing column 'text'"),
    ('text,class\nhello,1\n', r"missing column 'label'"),
    ('text,label\nhello,one\n', r"row 1: label='one': must be an integer in \[0, 4\)"),
    ('text,label\nhello,1.0\n', r"row 1: label='1.0': must be an integer"),
    ('text,label\nhello,1\nbye,4\n', r'row 2: label=4: must be an integer in \[0, 4\)'),
    ('text,label\nhello,-1\n', r'row 1: label=-1: must be an integer in \[0, 4\)'),
    ('text,label\nhello,1\n"  ",2\n', r'row 2: empty text'),
    (b'text,label\nhello,1\ncaf\xe9,2\n', r"byte b'\\xe9' at offset 22 \(line 3\) is not UTF-8"),
])
def test_bad_csv_files_are_one_line_errors_and_nothing_cached_is_lost(csv_folder, tmp_path,
                                                                       content, match):
  cache = tmp_path / 'cache'
  data.load_splits(_text_config(csv_folder, cache))
  cached = {f: (cache / f).read_bytes() for f in os.listdir(cache)}
  _write(csv_folder, 'train.csv', content, 'wb' if isinstance(content, bytes) else 'w')
  with pytest.raises(data.DatasetError, match=match) as error:
    data.load_splits(_text_config(csv_folder, cache))
  assert '\n' not in str(error.value)
  assert {f: (cache / f).read_bytes() for f in os.listdir(cache)} == cached


def test_text_config_errors_are_one_line(csv_folder, tmp_path):
  with pytest.raises(data.DatasetError, match=r"CSV file '.*missing.csv' not found; path must be a "
                     r"folder holding config.dataset.csv_files=\('missing.csv', 'test.csv'\)"):
    data.load_splits(_text_config(csv_folder, tmp_path, csv_files=('missing.csv', 'test.csv')))
  with pytest.raises(config_schema.ConfigError,
                     match=r"^config.dataset.source='idx': ag_news is text data; use one of csv"):
    data.load_splits(_text_config(csv_folder, tmp_path, source='idx'))
  with pytest.raises(config_schema.ConfigError, match=r"^config.dataset.source='csv': "
                     r'fashion_mnist is image data; use one of idx, tfds, npz$'):
    data.load_splits(_text_config(csv_folder, tmp_path, name='fashion_mnist'))
  with pytest.raises(config_schema.ConfigError, match=r"^config.dataset.augmentation='crop': "
                     r"ag_news is text; use 'default' or 'none'$"):
    data.augment_fn_for(_text_config(csv_folder, tmp_path, augmentation='crop'))
  with pytest.raises(config_schema.ConfigError, match=r'^config.dataset.csv_files=\(.*\): must '
                     r'be \(train file, test file\)$'):
    data.load_splits(_text_config(csv_folder, tmp_path, csv_files=('a', 'b', 'c')))


def test_text_split_checks_ids_against_lengths():
  with pytest.raises(data.DatasetError, match='nonzero before each length and 0'):
    text.TextSplit(np.array([[3, 0, 4]], np.int32), np.zeros(1, np.int32), np.array([3], np.int32))
  with pytest.raises(data.DatasetError, match=r'must be int32 \(N, L\)'):
    text.TextSplit(np.zeros((1, 2, 3), np.uint8), np.zeros(1, np.int32), np.ones(1, np.int32))


def test_tfds_text_source_on_mock_data(tmp_path):
  config = _text_config('', tmp_path, source='tfds', vocab_size=50, max_length=16)
  with helpers.mock_tfds(12):
    splits = data.load_splits(config)
  assert splits.train.tokens.shape == (12, 16) and splits.train.tokens.dtype == np.int32
  assert splits.train.tokens.max() < 50 and splits.train.lengths.min() >= 1
  assert 0 <= splits.train.labels.min() and splits.train.labels.max() < 4


def test_tfds_text_download_is_refused_with_the_build_command(tmp_path):
  config = _text_config('', tmp_path, source='tfds', name='imdb', download=True)
  with pytest.raises(data.DatasetError, match=r'^config.dataset.download=True: text datasets are '
                     r'not downloaded here; .* tfds build imdb_reviews '):
    data.load_splits(config)


@pytest.mark.skipif(not os.path.isdir(AG_NEWS), reason='needs ../shared/data/ag_news')
def test_real_offline_ag_news(tmp_path):
  config = _text_config(AG_NEWS, tmp_path, csv_files=('val_ag1.csv', 'test_ag1.csv'),
                        vocab_size=30_000, max_length=256, remove_stop_words=True)
  splits = data.load_splits(config)
  assert splits.train.tokens.shape == (10_000, 256) and splits.test.tokens.shape == (7_600, 256)
  np.testing.assert_array_equal(np.bincount(splits.test.labels), [1900] * 4)
  assert splits.train.lengths.max() < 256  # no AG News text is cut at 256 tokens
  assert splits.train.tokens.max() == 29_999  # the vocabulary is full
