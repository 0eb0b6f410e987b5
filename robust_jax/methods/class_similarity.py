"""Class-similarity targets (Negi, Chan & Mahoor 2018, arXiv 1812.09744).

Cross-entropy against row y of a row-stochastic class-similarity matrix instead of a one-hot target
(PROPOSAL, papers.md 5.2; only the abstract could be read):

    L(x, y) = -Σ_j S[y, j] log softmax(f(x))_j,      S = (1 - α) I + α S̃

S̃ (zero diagonal, rows sum to 1) is estimated from data by
`python experiments/estimate_class_similarity.py --workdir=BASELINE_RUN` (per-class mean softmax of
a trained plain cross-entropy baseline, PROPOSAL (a)), saved beside that run as
`class_similarity.npy`, and loaded from `matrix_path`. α is the mixing weight (`alpha`).
The targets are constants (no gradient); any loss that takes targets (cross_entropy, mdl, trades)
and any adversary or weight perturbation compose with them.

Two layers. `targets` and `similarity_targets_matrix` are pure functions of a similarity matrix;
with any model: `loss = losses.soft_cross_entropy(logits, class_similarity.targets(labels,
similarity, alpha=0.1)).mean()`. `class_similarity_targets(config, num_classes)` is the adapter the
`targets` config section builds (it loads S̃ from `matrix_path`).
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from robust_jax import arguments
from robust_jax.config import schema as cs
from robust_jax.objectives import TARGETS, TargetsFn

__all__ = ['SCHEMA', 'class_similarity_targets', 'load_similarity', 'similarity_targets_matrix',
           'targets']

SCHEMA: cs.Schema = {
    'matrix_path': cs.text(),
    'alpha': cs.real(0.0, 1.0, exclusive_maximum=True,
                     note='α = 1 gives the true class target 0: the model learns to avoid it'),
}


def similarity_targets_matrix(similarity, alpha: float):
  """S = (1 - α) I + α S̃ (Negi et al. 2018), the (C, C) matrix whose row y is the target of y.

  similarity: S̃ (C, C), entries >= 0, zero diagonal, rows summing to 1 (checked where concrete;
  a NumPy array gives a NumPy array in float64, a JAX array a JAX array); alpha: α in [0, 1].
  """
  arguments.check_number('alpha', alpha, 0.0, maximum=1.0)
  arguments.check_similarity_matrix('similarity', similarity)
  return _mix(similarity, alpha)


def _mix(similarity, alpha):
  return (1.0 - alpha) * np.eye(similarity.shape[0]) + alpha * similarity


def targets(labels: jax.Array, similarity, *, alpha: float) -> jax.Array:
  """Class-similarity targets (Negi et al. 2018): row y_b of S = (1 - α) I + α S̃, for each b,

      t_b = (1 - α) e_{y_b} + α S̃[y_b],     then L = (1/B) Σ_b -Σ_j t_{b,j} log softmax(z_b)_j.

  labels: (B,) int in [0, C) (or one label, shape (), e.g. under `jax.vmap`); similarity: S̃
  (C, C), entries >= 0, zero diagonal, rows summing to 1 (NumPy or JAX; checked where concrete; a
  NumPy S̃ is mixed in float64 once while tracing); alpha: α in [0, 1]. Returns (B, C) target
  distributions (float32 unless JAX's 64-bit mode is on), constants in θ.
  """
  arguments.check_number('alpha', alpha, 0.0, maximum=1.0)
  num_classes = arguments.check_similarity_matrix('similarity', similarity)
  if not hasattr(labels, 'dtype') or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f'labels.dtype={getattr(labels, "dtype", type(labels).__name__)}: must be an '
                    'integer type (class indices)')
  if labels.ndim > 1:
    raise ValueError(f'labels.shape={tuple(labels.shape)}: must be (B,), one class index per '
                     'example')
  arguments.check_index_range('labels', labels, num_classes, 'similarity has')
  return jnp.asarray(_mix(similarity, alpha))[labels]


def load_similarity(path: str, num_classes: int) -> np.ndarray:
  """S̃ (num_classes, num_classes) from a `.npy` file, checked: real entries, rows probability
  vectors (within the stored dtype's precision: float16 rows sum to 1 only within ~1e-3) with a
  zero diagonal. Returns it in float64, each row divided by its sum. Raises ConfigError naming
  `config.targets.matrix_path` (also for a file np.load cannot read as a .npy array).
  """
  if not os.path.exists(path):
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: file not found; estimate it with '
                         'python experiments/estimate_class_similarity.py --workdir=BASELINE_RUN')
  try:
    stored = np.load(path)
  except (OSError, ValueError) as e:  # a folder, a text or CSV file, an .npz archive
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: not readable as a .npy matrix '
                         f'({e}); write S̃ with np.save') from None
  if not isinstance(stored, np.ndarray) or stored.dtype.kind not in 'fiu':
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: holds '
                         f'{getattr(stored, "dtype", type(stored).__name__)}; must be a real '
                         f'({num_classes}, {num_classes}) matrix written with np.save')
  if stored.shape != (num_classes, num_classes):
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: shape {stored.shape}, expected '
                         f'({num_classes}, {num_classes})')
  matrix = stored.astype(np.float64)
  sums = matrix.sum(1, keepdims=True)
  # a row of float16 entries sums to 1 only within C rounding errors of float16 (~1e-3 for C = 10)
  precision = np.finfo(stored.dtype).eps if stored.dtype.kind == 'f' else 0.0
  tolerance = max(arguments.ROW_SUM_TOLERANCE, num_classes * float(precision))
  if not np.allclose(sums, 1.0, atol=tolerance) or matrix.min() < 0:
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: rows must be probability vectors')
  if np.abs(np.diag(matrix)).max() > arguments.DIAGONAL_TOLERANCE:
    raise cs.ConfigError(
        f'config.targets.matrix_path={path!r}: the diagonal must be 0 (largest entry '
        f'{np.abs(np.diag(matrix)).max():.4g}); S̃ holds only the other classes, the true class '
        'gets 1 - alpha through S = (1 - alpha) I + alpha S̃')
  if np.allclose(sums, 1.0, atol=arguments.ROW_SUM_TOLERANCE):
    return stored  # as stored: the targets of runs trained before this check stay the same
  return matrix / sums  # a low-precision matrix (float16), renormalised in float64


@TARGETS.register('class_similarity', SCHEMA, defaults={'matrix_path': '', 'alpha': 0.1})
def class_similarity_targets(config, num_classes: int) -> TargetsFn:
  """Adapter: `targets` with S̃ loaded from `config.matrix_path` and α = `config.alpha`.

  config: the `targets` section (SCHEMA). Returns labels (B,) -> targets (B, C).
  """
  similarity, alpha = load_similarity(config.matrix_path, num_classes), config.alpha
  return lambda labels: targets(labels, similarity, alpha=alpha)
