r"""Train-step throughput of robust_jax's general step vs a minimal hand-written JAX step.

    python experiments/benchmark.py [--configs=configs/erm.py:fashion_mnist,configs/amp.py:...]
        [--rounds=7 --steps=10 --json_out=bench.json]

The first config is the ERM baseline the others' "× ERM" column divides by.

Both steps train the same model with the same objective and optimizer on synthetic data of the
dataset's shape (uint8 images on the device, sharded like training batches). Each round times
`--steps` steps of one and then of the other, alternating which goes first, so machine noise and
order hit both alike. Reported, after compilation: each step's median time over rounds, and the
ratio of the two as the median of the per-round ratios (paired, so a slow round cancels). Prints a
table and one JSON line; with `--json_out` also writes the JSON, per-round times included.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from absl import app, flags  # noqa: E402

from experiments import reference_steps  # noqa: E402
from robust_jax import data, objectives, optim, sharding, train_state, train_step  # noqa: E402
from robust_jax import validation  # noqa: E402
from robust_jax.models import build_model  # noqa: E402
from robust_jax.runs import config_name, load_config_file  # noqa: E402

_CONFIGS = flags.DEFINE_list('configs', ['configs/fashion_mnist_cnn.py'],
                             'Config files (path.py:variant); the first is the ERM baseline.')
_ROUNDS = flags.DEFINE_integer('rounds', 7, 'Timed rounds (median is reported).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Steps per timed round.')
_JSON_OUT = flags.DEFINE_string('json_out', '', 'Also write the JSON result here.')


def _time_steps(run_one, num_steps: int) -> float:
  """Seconds per step over `num_steps` steps; blocks on the result before stopping the clock."""
  start = time.perf_counter()
  for _ in range(num_steps):
    result = run_one()
  jax.block_until_ready(result)
  return (time.perf_counter() - start) / num_steps


def benchmark(config, rounds: int, steps: int) -> dict:
  validation.validate_config(config)
  mesh = sharding.make_mesh()
  spec = data.spec_for(config.dataset)
  batch_size = config.train.batch_size
  model = build_model(config.model, spec, objectives.build_feature_transforms(config))
  optimizer, _ = optim.make_optimizer(config.optimizer, 100, 10_000)
  augment_fn = data.augment_fn_for(config.dataset)
  rng = np.random.default_rng(0)
  batch = jax.device_put(
      {'image': rng.integers(0, 256, (batch_size, *spec.image_shape), np.uint8),
       'label': rng.integers(0, spec.num_classes, batch_size).astype(np.int32)},
      sharding.batch_sharded(mesh))
  replicated = sharding.replicated(mesh)
  init = jax.jit(lambda k: train_state.init_train_state(model, optimizer, k, spec.image_shape),
                 out_shardings=replicated)

  general_step = train_step.make_train_step(
      objectives.build_loss_fn(config, model, spec.num_classes), optimizer, augment_fn,
      jax.random.key(1), mesh, config.train.log_grad_norm)
  general = {'state': init(jax.random.key(0))}

  def run_general():
    general['state'], metrics = general_step(general['state'], batch)
    return metrics['loss']

  reference = jax.jit(reference_steps.train_step(config, model.module, spec.num_classes, optimizer,
                                                 augment_fn),
                      in_shardings=(replicated,) * 3 + (sharding.batch_sharded(mesh),) * 2
                      + (replicated,),
                      out_shardings=replicated, donate_argnums=(0, 1, 2))
  state = init(jax.random.key(0))
  hand = {'args': (state.params, state.model_state, state.opt_state), 'step': 0}

  def run_hand():
    key = jax.random.fold_in(jax.random.key(1), hand['step'])
    *new_args, loss = reference(*hand['args'], batch['image'], batch['label'], key)
    hand['args'], hand['step'] = tuple(new_args), hand['step'] + 1
    return loss

  for run in (run_general, run_hand):  # compile and warm up
    _time_steps(run, 2)
  times = {run_general: [], run_hand: []}
  for round_index in range(rounds):
    order = (run_general, run_hand) if round_index % 2 == 0 else (run_hand, run_general)
    for run in order:
      times[run].append(_time_steps(run, steps))
  general_times, hand_times = times[run_general], times[run_hand]
  general_s, hand_s = statistics.median(general_times), statistics.median(hand_times)
  return {
      'config': {k: config[k].get('name') for k in ('model', *objectives.SECTIONS)},
      'dataset': spec.name, 'global_batch': batch_size,
      'robust_jax_step_s': general_s, 'hand_written_step_s': hand_s,
      'robust_jax_images_per_s': batch_size / general_s,
      'hand_written_images_per_s': batch_size / hand_s,
      'ratio_time_general_over_hand': statistics.median(
          g / h for g, h in zip(general_times, hand_times)),
      'robust_jax_round_s': general_times, 'hand_written_round_s': hand_times,
      'rounds': rounds, 'steps_per_round': steps,
      'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}',
      'platform': platform.platform(),
      'versions': {'jax': jax.__version__, 'flax': flax.__version__, 'optax': optax.__version__,
                   'python': platform.python_version()},
  }


def main(argv):
  del argv
  results = []
  for spec in _CONFIGS.value:
    results.append({'name': config_name(spec),
                    **benchmark(load_config_file(spec), _ROUNDS.value, _STEPS.value)})
    print(json.dumps(results[-1]), flush=True)
  first = results[0]
  print(f'\ndevice: {first["device"]}   jax {first["versions"]["jax"]}   '
        f'global batch {first["global_batch"]}   median of {first["rounds"]} rounds × '
        f'{first["steps_per_round"]} steps')
  print('| config | robust_jax ms/step | images/s | hand-written ms/step | time ratio to '
        'hand-written | time × ERM |\n|---|---|---|---|---|---|')
  for r in results:
    print(f'| {r["name"]} | {1e3 * r["robust_jax_step_s"]:.1f} | '
          f'{r["robust_jax_images_per_s"]:.0f} | {1e3 * r["hand_written_step_s"]:.1f} | '
          f'{r["ratio_time_general_over_hand"]:.3f} | '
          f'{r["robust_jax_step_s"] / first["robust_jax_step_s"]:.2f} |')
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main)
