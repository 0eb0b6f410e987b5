"""Train R seeds of your own model with AMP in ONE `jax.jit`: write one model's step, vmap it.

The small Flax CNN of examples/functional_api.py and an AMP step (`rj.amp.perturbation`) are
written for ONE model; then `jax.jit(jax.vmap(train_step))` trains R of them at once on stacked
parameters, optimizer states, batches and keys. Replica r derives its init key, data order (its own permutation of the training
subset each epoch) and step keys (dropout, AMP) from seed r exactly as a single-seed run does, so
it equals the separate run of seed r up to the float rounding of batched (grouped) convolutions
and matmuls, which training amplifies slowly. `--check_against_separate` trains each seed alone
with the same code (no vmap) and prints the largest parameter difference (on CPUs, where grouped
convolutions are slow, separate runs are faster). Data: `apt-get install dataset-fashion-mnist`.

    python3 examples/replicas.py [--seeds=0,1,2] [--steps=100] [--check_against_separate]

The trainer's version: `--config.train.seeds='(0,1,2)'` (robust_jax/training/replicas.py).
"""
import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import robust_jax as rj
from robust_jax.data import idx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from functional_api import cnn_apply, cnn_init  # noqa: E402  (its small Flax CNN, dropout 0.2)

EPSILON, INNER_LR = 0.1, 1.0  # AMP: weight-perturbation radius ε and inner ascent step ζ
OPTIMIZER = optax.adam(1e-3)


def init(seed: int):
  """(params, opt_state) of seed `seed`'s model: its init key is fold_in(key(seed), 0)."""
  params = cnn_init(jax.random.fold_in(jax.random.key(seed), 0))
  return params, OPTIMIZER.init(params)


def train_step(params, opt_state, images, labels, key):
  """One AMP step of ONE model on uint8 images (B, 28, 28, 1): descend with ∇L(θ + Δ)."""
  images = images.astype(jnp.float32) / 255
  inner_key, outer_key = jax.random.split(key)
  loss_fn = lambda p, k: jnp.mean(rj.losses.cross_entropy(cnn_apply(p, images, k), labels))
  delta = rj.amp.perturbation(loss_fn, params, epsilon=EPSILON, inner_lr=INNER_LR, inner_steps=1,
                              key=inner_key).delta
  loss, grads = jax.value_and_grad(loss_fn)(optax.apply_updates(params, delta), outer_key)
  updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def schedule(seed: int, steps: int, batch_size: int, n: int):
  """The rest a single-seed run derives from `seed`: its data order, (steps, batch_size) indices
  (a fresh permutation of the n examples each epoch), and its step keys (steps,)."""
  rng, epochs = np.random.default_rng(seed), -(-steps * batch_size // n)
  order = np.concatenate([rng.permutation(n) for _ in range(epochs)])[:steps * batch_size]
  return order.reshape(steps, batch_size), jax.random.split(
      jax.random.fold_in(jax.random.key(seed), 1), steps)


STEP = jax.jit(train_step)                       # one model
REPLICA_STEP = jax.jit(jax.vmap(train_step))     # R models: every argument has a leading R axis
REPLICA_ACCURACY = jax.jit(jax.vmap(lambda params, images, labels: jnp.mean(
    jnp.argmax(cnn_apply(params, images), -1) == labels), in_axes=(0, None, None)))


def train(seeds, steps, images, labels, test_images, test_labels, *, batch_size=128,
          separate=False):
  """Trains one model per seed in one jit(vmap(train_step)), or (`separate`) one after the other
  with jit(train_step). Returns final params (leaves (R, ...)) and clean test accuracy (R,)."""
  orders, keys = zip(*[schedule(s, steps, batch_size, len(images)) for s in seeds])
  stack = lambda trees: jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)
  runs = ([(STEP, init(s), o, k) for s, o, k in zip(seeds, orders, keys)] if separate else
          [(REPLICA_STEP, stack([init(s) for s in seeds]), np.stack(orders), jnp.stack(keys))])
  finals = []
  for step, (params, opt_state), order, key in runs:  # order (..., steps, B), key (..., steps)
    for t in range(steps):
      batch = order[..., t, :]
      params, opt_state, _ = step(params, opt_state, images[batch], labels[batch], key[..., t])
    finals.append(params)
  params = stack(finals) if separate else finals[0]
  return params, np.asarray(REPLICA_ACCURACY(params, test_images, test_labels))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
  parser.add_argument('--seeds', default='0,1,2', help='comma-separated integers')
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--train_examples', type=int, default=10000)
  parser.add_argument('--test_examples', type=int, default=1000)
  parser.add_argument('--check_against_separate', action='store_true')
  args = parser.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(',')]
  splits = idx.load_idx_folder(args.data).checked(rj.data.SPECS['fashion_mnist'])
  data = (splits.train.images[:args.train_examples], splits.train.labels[:args.train_examples],
          jnp.asarray(splits.test.images[:args.test_examples], jnp.float32) / 255,
          jnp.asarray(splits.test.labels[:args.test_examples]))
  start = time.perf_counter()
  params, acc = train(seeds, args.steps, *data, batch_size=args.batch_size)
  print(f'{len(seeds)} seeds × {args.steps} AMP steps (batch {args.batch_size}, {len(data[0])} '
        f'Fashion-MNIST images) in one jax.jit: {time.perf_counter() - start:.1f} s')
  for seed, a in zip(seeds, acc):
    print(f'  seed {seed}: clean accuracy {100 * a:5.1f} % on {len(data[2])} test images')
  print(f'  mean ± std: {100 * acc.mean():.1f} ± {100 * acc.std():.1f} %')
  if args.check_against_separate:
    start = time.perf_counter()
    separate, _ = train(seeds, args.steps, *data, batch_size=args.batch_size, separate=True)
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree.leaves(params), jax.tree.leaves(separate)))
    print(f'separate runs, one seed at a time: {time.perf_counter() - start:.1f} s; largest '
          f'|replica − separate| parameter difference {difference:.2e}')
  return params, acc


if __name__ == '__main__':
  main()
