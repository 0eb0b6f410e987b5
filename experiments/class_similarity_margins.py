r"""Why class-similarity targets leave the CNN weaker against PGD than ERM at equal FGSM accuracy.

    python3 experiments/class_similarity_margins.py \
        --workdirs=RUNS/erm_fashion_mnist/seed0,RUNS/class_similarity_fashion_mnist/seed0 \
        [--num_examples=1000] [--epsilon=0.1] [--output=margins.json]

For each trained workdir, on its first N test images: the clean logit margin z_y - max_{j≠y} z_j
of the correctly classified ones (quartiles), the L∞ distance to the linearised boundary with the
runner-up class, margin / ‖∇_x margin‖₁ (quartiles), the margin the targets themselves ask for
(log S[y, y] / max_{j≠y} S[y, j] with S = (1 - α) I + α S̃ from the class-similarity config; ERM's
one-hot target asks for an unbounded one), FGSM and PGD-20 accuracy (L∞ ε, step ε/4, random
start) and where PGD sends the examples it breaks: the share landing on the class S̃ ranks most
similar to the true one (the same S̃ for every run, the shipped Fashion-MNIST matrix by default).
Prints a table and writes a json.
"""
from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from configs import class_similarity as class_similarity_config  # noqa: E402
from robust_jax import attacks, json_utils  # noqa: E402
from robust_jax.methods import class_similarity  # noqa: E402
from robust_jax.training.runs import load_run  # noqa: E402

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Trained workdirs to compare.', required=True)
_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', 1000, 'The first N test images.')
_EPSILON = flags.DEFINE_float('epsilon', 0.1, 'L∞ radius in [0, 1] pixel units.')
_MATRIX = flags.DEFINE_string('matrix', class_similarity_config.FASHION_MNIST_MATRIX,
                              'S̃ that ranks the most similar class (.npy, zero diagonal).')
_OUTPUT = flags.DEFINE_string('output', None, 'Also write the json here.')


def margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """(N,) z_y - max_{j≠y} z_j of logits (N, C); > 0 where classified correctly."""
  true = np.take_along_axis(logits, labels[:, None], 1)[:, 0]
  others = np.where(np.eye(logits.shape[1], dtype=bool)[labels], -np.inf, logits)
  return true - others.max(1)


def linear_distance(logits_fn, images, labels, others):
  """(N,) L∞ distance to the linearised boundary with class `others`: (z_y - z_o) / ‖∇_x(z_y -
  z_o)‖₁ at the clean images (FAB's step; what one FGSM step of that size would cross)."""
  def gap(x):
    logits = logits_fn(x)
    return (jnp.take_along_axis(logits, labels[:, None], 1)
            - jnp.take_along_axis(logits, others[:, None], 1))[:, 0]
  values, pullback = jax.vjp(gap, images)
  gradient = pullback(jnp.ones_like(values))[0].reshape(len(values), -1)
  return values / jnp.sum(jnp.abs(gradient), -1)


def target_margins(config, num_classes: int) -> np.ndarray | None:
  """(C,) log S[y, y] - log max_{j≠y} S[y, j] of the run's targets; None for one-hot targets."""
  if config.targets.name != 'class_similarity':
    return None
  rows = class_similarity.similarity_targets_matrix(
      class_similarity.load_similarity(config.targets.matrix_path, num_classes),
      config.targets.alpha)
  return np.asarray(margins(np.log(np.asarray(rows)), np.arange(num_classes)))


def analyse(workdir: str, similarity: np.ndarray, num_examples: int, epsilon: float) -> dict:
  config, model, params, model_state, splits, _ = load_run(workdir)
  images = jnp.asarray(splits.test.images[:num_examples], jnp.float32) / 255.0
  labels = np.asarray(splits.test.labels[:num_examples], np.int32)
  logits_fn = jax.jit(lambda x: model.apply(params, model_state, x, train=False)[0])
  clean = np.asarray(logits_fn(images))
  margin = margins(clean, labels)
  correct = margin > 0
  attack = functools.partial(attacks.pgd, logits_fn, images, jnp.asarray(labels),
                             jax.random.key(0), epsilon=epsilon)
  fgsm = np.asarray(logits_fn(attacks.fgsm(logits_fn, images, jnp.asarray(labels),
                                           jax.random.key(0), epsilon=epsilon))).argmax(1)
  pgd = np.asarray(logits_fn(attack(step_size=epsilon / 4, num_steps=20,
                                    random_start=True))).argmax(1)
  broken = correct & (pgd != labels)
  runner_up = np.where(np.eye(clean.shape[1], dtype=bool)[labels], -np.inf, clean).argmax(1)
  distance = np.asarray(linear_distance(logits_fn, images, jnp.asarray(labels),
                                        jnp.asarray(runner_up)))
  most_similar = similarity.argmax(1)[labels]
  targets = target_margins(config, clean.shape[1])
  return {
      'workdir': workdir, 'targets': config.targets.name, 'clean': float(correct.mean()),
      'fgsm': float((fgsm == labels).mean()), 'pgd20': float((pgd == labels).mean()),
      'margin_quartiles': [float(q) for q in np.percentile(margin[correct], [25, 50, 75])],
      'linear_distance_quartiles': [float(q) for q in
                                    np.percentile(distance[correct], [25, 50, 75])],
      'target_margin_mean': None if targets is None else float(targets[labels].mean()),
      'pgd_broken': int(broken.sum()),
      'pgd_to_most_similar': float((pgd[broken] == most_similar[broken]).mean()),
  }


def main(argv):
  del argv
  similarity = np.load(_MATRIX.value)
  rows = [analyse(w, similarity, _NUM_EXAMPLES.value, _EPSILON.value) for w in _WORKDIRS.value]
  print('| run | targets | clean | FGSM | PGD-20 | clean margin, quartiles | target margin | '
        'linearised L∞ distance, quartiles | PGD breaks | to the most similar class |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    target = '∞' if r['target_margin_mean'] is None else f'{r["target_margin_mean"]:.2f}'
    print(f'| {r["workdir"]} | {r["targets"]} | {100 * r["clean"]:.1f} | {100 * r["fgsm"]:.1f} | '
          f'{100 * r["pgd20"]:.1f} | ' + ' / '.join(f'{q:.2f}' for q in r['margin_quartiles'])
          + f' | {target} | ' + ' / '.join(f'{q:.3f}' for q in r['linear_distance_quartiles'])
          + f' | {r["pgd_broken"]} | {100 * r["pgd_to_most_similar"]:.0f} % |')
  if _OUTPUT.value:
    json_utils.dump({'epsilon': _EPSILON.value, 'num_examples': _NUM_EXAMPLES.value,
                     'runs': rows}, _OUTPUT.value)


if __name__ == '__main__':
  app.run(main)
