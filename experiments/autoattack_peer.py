r"""robust_jax's AutoAttack against torchattacks' on the same weights and the same test images.

    python3 experiments/autoattack_peer.py --workdir=workdirs/fashion_mnist_cnn \
        [--num_examples=1000] [--epsilon=0.1] [--output=W/autoattack_peer.json]

Loads a trained workdir (a model with a PyTorch twin: `tests/oracles/torch_reference.py`, e.g. the
Fashion-MNIST CNN), copies its weights into the twin (`load_flax_variables`), and on the first N
test images runs, at L∞ ε:

* robust_jax: `attacks.autoattack_sequence` (version 'standard'), sharded over the local devices;
* torchattacks 3.5.1: the attacks of its `AutoAttack(version='standard')`, APGD (CE), APGDT, FAB
  (multi-targeted) and Square, in that order, each on the examples still robust (as the
  reference's run_standard_evaluation; torchattacks' own `MultiAttack` also attacks the examples
  misclassified to begin with). Its `AutoAttack` class leaves APGD, APGDT and FAB at torchattacks'
  default of 10 steps and Square at `resc_schedule=True`; here they get the reference's budgets
  (the same `AutoAttackSettings` as robust_jax: 100 steps, 9 target classes, 5,000 queries,
  resc_schedule=False).

Prints and writes a json: clean accuracy and the robust accuracy after each attack for both, each
attack's seconds (robust_jax's include compilation, also given apart as `compile_seconds`), the
seconds per example and what broke each example (`broken_by`). Both models run in eval mode, with
the same CPU threads (JAX's XLA uses every core; torch.get_num_threads() is recorded). An
optional script: it needs the `pytorch` extra (torch, torchattacks).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchattacks  # noqa: E402
from absl import app, flags  # noqa: E402

from tests.oracles import torch_reference  # noqa: E402
from robust_jax import attacks, data, json_utils, sharding  # noqa: E402
from robust_jax.attacks.sequence import accuracy_after_each  # noqa: E402
from robust_jax.models import build_model  # noqa: E402
from robust_jax.training.runs import load_run  # noqa: E402

__all__ = ['compare', 'torchattacks_sequence']

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """The script's flags, defined only when it runs as a script: a process that imports `compare`
  (a test) may also hold robust_jax.evaluate's flags, --workdir among them."""
  flags.DEFINE_string('workdir', None, 'A trained workdir (config.json + checkpoints).')
  flags.DEFINE_integer('num_examples', 1000, 'The first N test images.')
  flags.DEFINE_float('epsilon', 0.1, 'L∞ radius in [0, 1] pixel units.')
  flags.DEFINE_integer('seed', 0, 'Seed of both sides.')
  flags.DEFINE_integer('batch_size', 500, 'Chunk size of both sides.')
  flags.DEFINE_string('output', None, 'Default: WORKDIR/autoattack_peer.json.')


def _logits(model, params, model_state, images):
  return model.apply(params, model_state, images, train=False)[0]


def torchattacks_sequence(twin, images: np.ndarray, labels: np.ndarray, *, epsilon: float,
                          settings: attacks.AutoAttackSettings, seed: int,
                          batch_size: int) -> tuple[np.ndarray, dict[str, float]]:
  """(broken_by (N,) as robust_jax's: 0 clean, k attack k, -1 robust; {name: seconds}).

  images (N, H, W, C) float32 in [0, 1]; `twin` a torch model of NCHW images in eval mode.
  """
  num_classes = int(twin(torch.from_numpy(np.moveaxis(images[:1], -1, 1))).shape[-1])
  common = dict(norm='Linf', eps=epsilon, seed=seed)
  sequence = [
      ('apgd-ce', torchattacks.APGD(twin, steps=settings.apgd_steps, n_restarts=1, loss='ce',
                                    **common)),
      ('apgd-t', torchattacks.APGDT(twin, steps=settings.apgd_steps, n_restarts=1,
                                    n_classes=num_classes, **common)),
      ('fab-t', torchattacks.FAB(twin, steps=settings.fab_steps, n_restarts=1,
                                 multi_targeted=True, n_classes=num_classes, **common)),
      ('square', torchattacks.Square(twin, n_queries=settings.square_queries, n_restarts=1,
                                     resc_schedule=False, **common)),
  ]
  targets = min(settings.num_target_classes, num_classes - 1)
  for _, attack in sequence[1:3]:
    attack.n_target_classes = targets
  x, y = torch.from_numpy(np.moveaxis(images, -1, 1).copy()), torch.from_numpy(labels).long()
  predict = lambda batch: torch.cat([twin(part).argmax(-1) for part in batch.split(batch_size)])
  with torch.no_grad():
    broken_by = np.where(predict(x).numpy() == labels, -1, 0)
  seconds = {}
  for k, (name, attack) in enumerate(sequence, 1):
    started = time.perf_counter()
    robust = np.flatnonzero(broken_by == -1)
    for start in range(0, len(robust), batch_size):
      rows = robust[start:start + batch_size]
      found = attack(x[rows], y[rows])
      with torch.no_grad():
        fooled = predict(found).numpy() != labels[rows]
      broken_by[rows[fooled]] = k
    seconds[name] = time.perf_counter() - started
  return broken_by, seconds


def _summary(broken_by, seconds, names, num_examples) -> dict:
  return {'accuracy': accuracy_after_each(broken_by, names), 'seconds': seconds,
          'seconds_per_example': sum(seconds.values()) / num_examples,
          'broken_by': np.asarray(broken_by).tolist()}


def compare(config, params, model_state, images: np.ndarray, labels: np.ndarray, *,
            epsilon: float, settings: attacks.AutoAttackSettings = attacks.AutoAttackSettings(),
            seed: int = 0, batch_size: int = 500, mesh=None) -> dict:
  """Both AutoAttacks on `images` (N, H, W, C) float32 in [0, 1] with `config`'s model.

  Returns {'robust_jax': ..., 'torchattacks': ...} each with 'accuracy' (clean, then after each
  attack), 'seconds' per attack and 'seconds_per_example', plus what was run.
  """
  spec = data.spec_for(config.dataset)
  model = build_model(config.model, spec)
  twin = torch_reference.make_model(**torch_reference.config_kwargs(config, spec)[0])
  torch_reference.load_flax_variables(twin, params, model_state.get('batch_stats'))
  twin.eval()
  logits_fn = jax.tree_util.Partial(functools.partial(_logits, model), params, model_state)
  names = attacks.autoattack_names('standard')
  result = attacks.autoattack_sequence(
      logits_fn, images, labels, jax.random.key(seed), epsilon, settings=settings,
      batch_size=batch_size, sharding=None if mesh is None else sharding.batch_sharded(mesh))
  peer_broken_by, peer_seconds = torchattacks_sequence(
      twin, images, labels, epsilon=epsilon, settings=settings, seed=seed, batch_size=batch_size)
  return {'num_examples': len(labels), 'epsilon': epsilon, 'norm': 'linf', 'seed': seed,
          'settings': dataclasses.asdict(settings), 'torch_threads': torch.get_num_threads(),
          'jax_devices': [str(d) for d in jax.local_devices()],
          'robust_jax': _summary(result.broken_by, result.seconds, names, len(labels))
                        | {'compile_seconds': result.compile_seconds},
          'torchattacks': _summary(peer_broken_by, peer_seconds, names, len(labels))}


def main(argv):
  del argv
  if not FLAGS.workdir:
    sys.exit('error: give --workdir')
  config, _, params, model_state, splits, mesh = load_run(FLAGS.workdir)
  count = FLAGS.num_examples
  images = np.asarray(splits.test.images[:count], np.float32) / 255.0
  labels = np.asarray(splits.test.labels[:count], np.int32)
  report = compare(config, params, model_state, images, labels, epsilon=FLAGS.epsilon,
                   seed=FLAGS.seed, batch_size=FLAGS.batch_size, mesh=mesh)
  output = FLAGS.output or os.path.join(FLAGS.workdir, 'autoattack_peer.json')
  json_utils.dump(report, output)
  names = list(report['robust_jax']['accuracy'])
  print(f'| side | {" | ".join(names)} | s / example |')
  print('|---' * (len(names) + 2) + '|')
  for side in ('robust_jax', 'torchattacks'):
    row = report[side]
    print(f'| {side} | ' + ' | '.join(f'{100 * row["accuracy"][n]:.2f}' for n in names)
          + f' | {row["seconds_per_example"]:.4f} |')
  print(json.dumps({side: report[side]['seconds'] for side in ('robust_jax', 'torchattacks')}))
  print('robust_jax compilation:', json.dumps(report['robust_jax']['compile_seconds']))
  print(f'wrote {output}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
