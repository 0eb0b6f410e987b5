"""Small datasets and configs shared by the tests."""
from __future__ import annotations

import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax.config import defaults as config_defaults

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def linear_problem(num_classes: int, num_images: int = 16, seed: int = 0):
  """A linear softmax model, logits = x W + b on flattened (2, 2, 3) images, for closed forms.

  Returns (logits_fn, W (12, C), images (N, 2, 2, 3) float32 in (0.1, 0.9), random labels (N,)).
  """
  rng = np.random.default_rng(seed)
  weights = jnp.asarray(rng.normal(size=(12, num_classes)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=num_classes), jnp.float32)
  images = jnp.asarray(rng.uniform(0.1, 0.9, size=(num_images, 2, 2, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, num_classes, num_images), jnp.int32)
  logits_fn = lambda x: x.reshape(x.shape[0], -1) @ weights + bias
  return logits_fn, weights, images, labels


def recorded(logits_fn, record: list):
  """`logits_fn` that appends each input it is evaluated at to `record`, in order, as float64
  NumPy arrays (`jax.debug.callback`: also inside jit and loops)."""
  def wrapped(x):
    jax.debug.callback(lambda v: record.append(np.asarray(v, np.float64)), x, ordered=True)
    return logits_fn(x)
  return wrapped


def quadrant_images(num: int, seed: int, size: int = 28, channels: int = 1):
  """uint8 images (num, size, size, channels) whose label (0..3) is the brightest quadrant."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 4, num).astype(np.int32)
  images = rng.integers(0, 60, (num, size, size, channels)).astype(np.uint8)
  half = size // 2
  for i, label in enumerate(labels):
    top, left = divmod(int(label), 2)
    images[i, top * half:(top + 1) * half, left * half:(left + 1) * half] += 150
  return images, labels


def write_quadrant_npz(path: str, num_train: int, num_test: int, size: int = 28,
                       channels: int = 1) -> None:
  x_train, y_train = quadrant_images(num_train, 0, size, channels)
  x_test, y_test = quadrant_images(num_test, 1, size, channels)
  np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def tiny_config(npz_path: str, **train_overrides):
  """A fast config: tiny CNN on the quadrant npz dataset (Fashion-MNIST shape, 10 classes)."""
  config = config_defaults.default_config()
  config.dataset.source = 'npz'
  config.dataset.path = npz_path
  config.model.widths = (4, 8)
  config.model.hidden_size = 16
  config.train.batch_size = 32
  config.train.num_epochs = 2
  config.train.log_every_steps = 4
  config.train.checkpoint_every_steps = 5
  config.eval.batch_size = 32
  config.optimizer.learning_rate = 1e-2
  config.train.update(train_overrides)
  return config


def write_text_csv_folder(folder, num_train: int = 64, num_test: int = 24) -> str:
  """train.csv / test.csv of 4-class texts whose label is the topic word they contain."""
  rng = np.random.default_rng(0)
  topics = ('stocks', 'match', 'election', 'planet')
  filler = ('the', 'news', 'today', 'report', 'about', 'new', 'week')
  def write(name, num):
    rows = ['text,label']
    for _ in range(num):
      label = int(rng.integers(0, 4))
      words = list(rng.choice(filler, 4)) + [topics[label]]
      rows.append(f'{" ".join(rng.permutation(words))},{label}')
    with open(f'{folder}/{name}', 'w') as f:
      f.write('\n'.join(rows) + '\n')
  write('train.csv', num_train)
  write('test.csv', num_test)
  return str(folder)


def tiny_text_config(folder: str, cache_dir: str, **train_overrides):
  """A fast text config: a 1-layer GRU of 8 units on `write_text_csv_folder`'s CSV files."""
  config = config_defaults.default_config()
  config.dataset.update(name='ag_news', source='csv', path=folder, cache_dir=cache_dir,
                        max_length=8, vocab_size=16, csv_files=('train.csv', 'test.csv'))
  config.model = dict(name='gru', num_layers=1, bidirectional=False, dropout_rate=0.0,
                      dropout_sites=(), embedding_size=8, hidden_size=8)
  config.train.update(dict(batch_size=16, num_epochs=1, log_every_steps=2,
                           checkpoint_every_steps=2) | train_overrides)
  config.eval.batch_size = 8
  return config


def mock_tfds(num_examples: int):
  """`tfds.testing.mock_data` with `num_examples` random records per split, each split drawn from
  its own seed: TFDS's own mock draws every split from seed 0, so its test split is the training
  split, which `data.load_splits` refuses."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  # slow to import
  from tensorflow_datasets.testing import mocking  # pylint: disable=import-outside-toplevel

  def data_source(builder, split, **kwargs):
    del kwargs
    return list(mocking.RandomFakeGenerator(builder.info.features, num_examples,
                                            seed=zlib.crc32(split.encode())))
  return tfds.testing.mock_data(as_data_source_fn=data_source)


def snapshot(directory: str) -> dict:
  """{relative path: (mtime_ns, bytes)} of every file under `directory`: equal snapshots mean
  nothing was written."""
  found = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        found[os.path.relpath(path, directory)] = (os.stat(path).st_mtime_ns, f.read())
  return found


def without_timings(results: dict) -> dict:
  """A results.json without its wall-time entries, which no rerun reproduces."""
  return {key: value for key, value in results.items() if key != 'evaluation_seconds'}


def assert_frequencies(counts, probabilities, what, min_p_value=1e-4):
  """Chi-square goodness of fit of `counts` to `probabilities` (same shape; cells whose
  probability is 0 must be empty; cells expecting fewer than 5 draws are pooled)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top  (jax's dependency)
  counts, probabilities = np.ravel(counts).astype(float), np.ravel(probabilities).astype(float)
  assert counts[probabilities == 0].sum() == 0, f'{what}: draws outside the support'
  expected = probabilities / probabilities.sum() * counts.sum()
  small = (expected < 5) & (probabilities > 0)
  observed = np.append(counts[expected >= 5], counts[small].sum())
  expected = np.append(expected[expected >= 5], expected[small].sum())
  observed, expected = observed[expected > 0], expected[expected > 0]
  p_value = stats.chi2.sf(np.sum((observed - expected) ** 2 / expected), len(observed) - 1)
  assert p_value > min_p_value, f'{what}: chi-square p = {p_value:.2e}'


def assert_rate(hits, probability: float, what: str):
  """Empirical rate of the boolean `hits` within 5 binomial standard errors of `probability`."""
  hits = np.asarray(hits)
  rate, error = hits.mean(), np.sqrt(probability * (1 - probability) / hits.size)
  assert abs(rate - probability) <= 5 * error + 1e-9, f'{what}: {rate:.4f} vs {probability}'


def describe_field(key: str, field, default) -> list[str]:
  """A config key's pinned description, wrapped at 100 characters: `key = default: accepted
  range`, and for a sequence what it says of its default with an item repeated, reversed, one
  item more and one fewer (what `allowed` does not say: uniqueness, order, length)."""
  line = f'  {key} = {default!r}: {field.allowed}'
  if tuple in field.types:
    value = tuple(default)
    last = value[-1] if value else 'a'
    more = f'{last}_more' if isinstance(last, str) else last  # new, and in order
    probes = (('duplicates', (value or ('a',))[:1] * max(len(value), 2)),
              ('reversed', value[::-1] if len(set(value)) > 1 else None),
              ('one more', value + (more,)), ('one fewer', value[:-1] or None))
    line += '; ' + ', '.join(f'{what} {"accepted" if field.predicate(probe) else "rejected"}'
                             for what, probe in probes if probe is not None)
  lines = []
  while len(line) > 100:
    cut = line.rindex(' ', 0, 100)
    lines.append(line[:cut])
    line = '    ' + line[cut + 1:]
  return [*lines, line]
