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
"""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from robust_jax import config_schema as cs
from robust_jax.objectives import TARGETS

SCHEMA: cs.Schema = {'matrix_path': cs.text(), 'alpha': cs.probability()}


def similarity_targets_matrix(similarity: np.ndarray, alpha: float) -> np.ndarray:
  """S = (1 - α) I + α S̃ for an off-diagonal similarity S̃ (C, C) whose rows sum to 1."""
  return (1.0 - alpha) * np.eye(similarity.shape[0]) + alpha * similarity


def load_similarity(path: str, num_classes: int) -> np.ndarray:
  if not os.path.exists(path):
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: file not found; estimate it with '
                         'python experiments/estimate_class_similarity.py --workdir=BASELINE_RUN')
  matrix = np.load(path)
  if matrix.shape != (num_classes, num_classes):
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: shape {matrix.shape}, expected '
                         f'({num_classes}, {num_classes})')
  if not np.allclose(matrix.sum(1), 1.0, atol=1e-4) or matrix.min() < 0:
    raise cs.ConfigError(f'config.targets.matrix_path={path!r}: rows must be probability vectors')
  if np.abs(np.diag(matrix)).max() > 1e-6:
    raise cs.ConfigError(
        f'config.targets.matrix_path={path!r}: the diagonal must be 0 (largest entry '
        f'{np.abs(np.diag(matrix)).max():.4g}); S̃ holds only the other classes, the true class '
        'gets 1 - alpha through S = (1 - alpha) I + alpha S̃')
  return matrix


@TARGETS.register('class_similarity', SCHEMA, defaults={'matrix_path': '', 'alpha': 0.1})
def class_similarity_targets(config, num_classes):
  targets = jnp.asarray(similarity_targets_matrix(
      load_similarity(config.matrix_path, num_classes), config.alpha), jnp.float32)
  return lambda labels: targets[labels]
