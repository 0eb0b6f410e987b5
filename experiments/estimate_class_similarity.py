r"""Estimates the class-similarity matrix S̃ from a trained plain cross-entropy run.

    python experiments/estimate_class_similarity.py --workdir=workdirs/erm [--temperature=1]

S̃[c, :] = mean over training images of class c of softmax(f(x) / T), diagonal removed and rows
renormalised (PROPOSAL (a) of papers.md 5.2). Writes WORKDIR/class_similarity.npy (load it with
`config.targets.matrix_path`) and a heatmap WORKDIR/class_similarity.png, and prints the matrix.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from robust_jax.data import pipeline  # noqa: E402
from robust_jax.training.runs import load_run  # noqa: E402

_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained ERM workdir.', required=True)
_TEMPERATURE = flags.DEFINE_float('temperature', 1.0, 'Softmax temperature T.')


def estimate(model, params, model_state, split, mesh, temperature: float) -> np.ndarray:
  """(C, C) off-diagonal row-stochastic matrix of per-class mean tempered softmax."""
  batches = pipeline.make_eval_batches(split, 1000, mesh)
  probabilities = jax.jit(lambda images: jax.nn.softmax(
      model.apply(params, model_state, pipeline.to_unit_float(images), train=False)[0]
      / temperature))
  num_classes = model.module.num_classes
  sums = np.zeros((num_classes, num_classes))
  for index in range(batches['label'].shape[0]):
    probs = np.asarray(probabilities(batches['image'][index]))
    mask = np.asarray(batches['mask'][index]).astype(bool)
    np.add.at(sums, np.asarray(batches['label'][index])[mask], probs[mask])
  np.fill_diagonal(sums, 0.0)
  return sums / sums.sum(1, keepdims=True)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  _, model, params, model_state, splits, mesh = load_run(_WORKDIR.value)
  similarity = estimate(model, params, model_state, splits.train, mesh, _TEMPERATURE.value)
  path = os.path.join(_WORKDIR.value, 'class_similarity.npy')
  np.save(path, similarity)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(figsize=(5, 4.5))
  image = axes.imshow(similarity, cmap='viridis')
  axes.set_xlabel('similar class j')
  axes.set_ylabel('true class c')
  axes.set_title('class similarity S̃[c, j]')
  figure.colorbar(image)
  figure.tight_layout()
  figure.savefig(path.replace('.npy', '.png'), dpi=120)
  np.set_printoptions(precision=3, suppress=True, linewidth=150)
  print(similarity)
  print(f'wrote {path} and class_similarity.png')


if __name__ == '__main__':
  app.run(main)
