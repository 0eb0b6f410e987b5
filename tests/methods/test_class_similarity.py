"""Class-similarity targets (robust_jax/methods/class_similarity.py): the identity case is
cross-entropy, and every bad similarity matrix or file is a one-line config error."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from robust_jax import objectives
from robust_jax.config import schema as cs
from robust_jax.config.schema import ConfigError
from robust_jax.methods import class_similarity


def test_class_similarity_with_identity_is_cross_entropy(tmp_path, tiny_model):
  model, params, state, batch = tiny_model
  off_diagonal = (np.ones((10, 10)) - np.eye(10)) / 9
  path = str(tmp_path / 's.npy')
  np.save(path, off_diagonal)
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.0))
  targets_fn = class_similarity.class_similarity_targets(section, 10)
  np.testing.assert_allclose(targets_fn(batch['label']), jax.nn.one_hot(batch['label'], 10))
  loss_fn = objectives.LOSSES.lookup('', 'cross_entropy').build(None, model, targets_fn)
  key = jax.random.key(0)
  logits, _ = model.apply(params, state, batch['image'], train=True, key=key)
  np.testing.assert_allclose(
      loss_fn(params, state, batch, key)[0],
      jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])),
      rtol=1e-6)
  section.alpha = 0.5
  targets = class_similarity.class_similarity_targets(section, 10)(batch['label'])
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(jnp.max(targets, -1), 0.5, rtol=1e-6)


def test_class_similarity_bad_matrix_is_a_clear_error(tmp_path):
  path = str(tmp_path / 'bad.npy')
  np.save(path, np.ones((3, 3)))
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  with pytest.raises(ConfigError, match=r'shape \(3, 3\), expected \(10, 10\)'):
    class_similarity.class_similarity_targets(section, 10)


def test_class_similarity_with_mass_on_the_diagonal_is_a_clear_error(tmp_path):
  path = str(tmp_path / 'diagonal.npy')
  np.save(path, np.full((10, 10), 0.1))  # rows sum to 1, but the true class has 0.1 of it
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  with pytest.raises(ConfigError, match=r'the diagonal must be 0 \(largest entry 0.1\)'):
    class_similarity.class_similarity_targets(section, 10)


def test_shipped_fashion_mnist_similarity_is_valid():
  from configs import class_similarity as config_file
  matrix = class_similarity.load_similarity(config_file.FASHION_MNIST_MATRIX, 10)
  np.testing.assert_allclose(np.diag(matrix), 0.0)


@pytest.mark.parametrize('write', [
    lambda path: np.savetxt(path, np.eye(10)),
    lambda path: open(path, 'w').write('a,b\n0.5,0.5\n'),
])
def test_a_similarity_file_that_is_no_npy_array_is_a_config_error(tmp_path, write):
  path = str(tmp_path / 's.npy')
  write(path)
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  with pytest.raises(ConfigError, match=r"^config.targets.matrix_path='\S+s.npy': not readable as "
                     r'a .npy matrix \(.*\); write S̃ with np.save$'):
    class_similarity.class_similarity_targets(section, 10)


def test_a_float16_similarity_matrix_is_read_within_its_precision(tmp_path):
  path = str(tmp_path / 's.npy')
  off_diagonal = ((np.ones((10, 10)) - np.eye(10)) / 9).astype(np.float16)
  assert abs(off_diagonal.sum(1, dtype=np.float64) - 1).max() > 1e-4
  np.save(path, off_diagonal)
  section = ml_collections.ConfigDict(dict(name='class_similarity', matrix_path=path, alpha=0.1))
  targets = class_similarity.class_similarity_targets(section, 10)(jnp.arange(10))
  np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)


# ----------------------------------------------------------------------------- mutation survivors
# From the survivors of the cosmic-ray run on 7fe75c1
# (experiments/results/mutation/2026-11-27_survivors.md, where they were
# tests/test_mutation_survivors.py::NAME): each kills a mutant no other test did.
def test_load_similarity_rejects_negative_entries_even_when_rows_sum_to_one(tmp_path):
  path = str(tmp_path / 'similarity.npy')
  np.save(path, np.array([[0.0, 1.5, -0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]))
  with pytest.raises(cs.ConfigError, match='probability vectors'):
    class_similarity.load_similarity(path, 3)


# ------------------------------------------------------------------------------- the file's checks
def _load(tmp_path, matrix):
  path = str(tmp_path / 'similarity.npy')
  np.save(path, matrix)
  return class_similarity.load_similarity(path, len(matrix))


def test_load_similarity_reads_each_row_within_its_dtypes_precision_and_nothing_more(tmp_path):
  """Rows must sum to 1 within 1e-4 (float64, float32, integers) or within C float16 rounding
  errors (float16, then divided by their own sums); entries must be real numbers."""
  swapped = np.array([[0.0, 1.0], [1.0, 0.0]])
  off_by_2e4 = (swapped + 2e-4) * (1 - np.eye(2))
  for bad in (0.5 * swapped, np.array([[0, 2], [2, 0]]), off_by_2e4):
    with pytest.raises(cs.ConfigError, match='rows must be probability vectors'):
      _load(tmp_path, bad)
  with pytest.raises(cs.ConfigError, match='holds bool; must be a real'):
    _load(tmp_path, swapped.astype(bool))
  np.testing.assert_array_equal(_load(tmp_path, swapped.astype(np.int64)), swapped)
  # float16 rows off by up to C·eps (≈ 2e-3 for C = 3), each divided by its own sum in float64
  rows = np.array([[0.0, 0.3335, 0.6665], [0.499, 0.0, 0.5], [0.25, 0.75, 0.0]], np.float16)
  loaded = _load(tmp_path, rows)
  sums = rows.astype(np.float64).sum(1, keepdims=True)
  assert np.abs(sums - 1).max() > 1e-4 and len(set(sums.ravel().tolist())) > 1
  np.testing.assert_array_equal(loaded, rows.astype(np.float64) / sums)


def test_load_similarity_returns_a_valid_matrix_as_stored_and_allows_a_diagonal_at_tolerance(
    tmp_path):
  """A matrix within the checks comes back as stored (same dtype, same bits: runs trained before
  the checks keep their targets); a diagonal entry of exactly 1e-6 is 0 within the tolerance."""
  stored = np.array([[0.0, 0.25, 0.75], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]], np.float32)
  loaded = _load(tmp_path, stored)
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, stored)
  at_tolerance = np.array([[0.0, 0.25, 0.75], [0.5, 1e-6, 0.5 - 1e-6], [1.0, 0.0, 0.0]])
  np.testing.assert_array_equal(_load(tmp_path, at_tolerance), at_tolerance)
  with pytest.raises(cs.ConfigError, match='the diagonal must be 0'):
    _load(tmp_path, at_tolerance + np.diag([0.0, 1e-6, 0.0]))
