"""`experiments/benchmark.py --replicas=1,3,8`: the train step of R replicas in one program
(`robust_jax.training.replicas`), for each R and each batching: 'sequential', 'unroll', 'vmap'.

A config's R replicas are its seeds 0..R-1 (`train.seeds`), stepped by the program the trainer
builds (`make_replica_train_step` over each replica's `step_function`, as `RunLayout.make_step`)
on one device, each replica with its own synthetic batch of `train.batch_size`. Compile time is
tracing, lowering and compiling it once ('sequential': its first call, which compiles one step
per sweep point and runs it once). Each round then times `steps` steps of every (batching, R)
in turn, the order reversed every other round. Reported: each step's median time over rounds, that
÷ R (time per replica), and the time per replica ÷ that of the first R (normally 1) with the same
batching as the median of the per-round ratios (paired, as benchmark.py's ratios).
"""
from __future__ import annotations

import statistics
import time

import jax
import numpy as np

from robust_jax import objectives, sharding
from robust_jax.config import validation
from robust_jax.training import optim, replicas, state as train_state, step as train_step

BATCHINGS = ('sequential', 'unroll', 'vmap')


def _replica_cell(config, count: int, batching: str, spec, model, augment_fn, make_batch, mesh):
  """{'run': run(steps) -> seconds per step, 'compile_s'} of the step of `count` replicas (seeds
  0..count-1, no sweep) of `config`."""
  config = config.copy_and_resolve_references()
  config.train.seeds = tuple(range(count))
  configs = [replica.config for replica in replicas.replica_specs(config)]
  keys = [jax.random.split(jax.random.key(c.seed), 3) for c in configs]  # init, data, step

  def build_step(replica_config):
    optimizer, _ = optim.make_optimizer(replica_config.optimizer, 100, 10_000)
    return train_step.step_function(
        objectives.build_loss_fn(replica_config, model, spec.num_classes), optimizer, augment_fn,
        replica_config.train.log_grad_norm)

  step_keys = jax.numpy.stack([k[2] for k in keys])
  step = train_step.make_replica_train_step(build_step, configs, (), step_keys, mesh, batching)
  optimizer, _ = optim.make_optimizer(config.optimizer, 100, 10_000)
  init = jax.jit(lambda k: train_state.init_train_state(model, optimizer, k, spec.image_shape),
                 out_shardings=sharding.replicated(mesh))
  states = jax.device_put(replicas.stack([init(k[0]) for k in keys]), sharding.replicated(mesh))
  rng = np.random.default_rng(0)
  batches = jax.device_put(replicas.stack([make_batch(rng) for _ in configs]),
                           sharding.replica_batch_sharded(mesh))
  start = time.perf_counter()
  if batching == 'sequential':  # a Python loop over compiled steps: compiles on its first call
    compiled = step
    states, metrics = step(states, batches)
    jax.block_until_ready(metrics)
  else:
    compiled = step.lower(states, batches).compile()
  cell = {'states': states, 'compile_s': time.perf_counter() - start}

  def run(num_steps: int) -> float:
    start = time.perf_counter()
    for _ in range(num_steps):
      cell['states'], metrics = compiled(cell['states'], batches)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / num_steps

  cell['run'] = run
  return cell


def benchmark_replicas(config, counts: list[int], rounds: int, steps: int, *, augment: bool,
                       spec, model, augment_fn, make_batch) -> dict:
  """Times R = each of `counts` replicas of `config` in each batching (module docstring)."""
  validation.validate_config(config)
  mesh = sharding.make_mesh(jax.devices()[:1])
  cells = {(batching, count): _replica_cell(config, count, batching, spec, model, augment_fn,
                                            make_batch, mesh)
           for batching in BATCHINGS for count in counts}
  for cell in cells.values():  # warm up
    cell['run'](1)
  times = {name: [] for name in cells}
  for round_index in range(rounds):
    for name in list(cells) if round_index % 2 == 0 else list(cells)[::-1]:
      times[name].append(cells[name]['run'](steps))
  rows = []
  for (batching, count), round_s in times.items():
    first = times[batching, counts[0]]
    rows.append({'batching': batching, 'replicas': count,
                 'compile_s': cells[batching, count]['compile_s'],
                 'step_s': statistics.median(round_s),
                 'replica_s': statistics.median(round_s) / count,
                 'ratio_replica_time_to_first': statistics.median(
                     (t / count) / (t1 / counts[0]) for t, t1 in zip(round_s, first)),
                 'round_s': round_s})
  return {'config': {k: config[k].get('name') for k in ('model', *objectives.SECTIONS)},
          'dataset': spec.name, 'batch_per_replica': config.train.batch_size, 'augment': augment,
          'replica_counts': list(counts), 'rows': rows, 'rounds': rounds,
          'steps_per_round': steps, 'device': f'{jax.devices()[0].device_kind} x1'}


def table(results: list[dict]) -> str:
  """The markdown table of `benchmark_replicas` results, under a line naming device and settings."""
  first = results[0]
  lines = [f'device: {first["device"]}   jax {first["versions"]["jax"]}   batch '
           f'{first["batch_per_replica"]} per replica   median of {first["rounds"]} rounds × '
           f'{first["steps_per_round"]} steps' + ('' if first['augment'] else
                                                  '   without augmentation')
           + (f'   overrides {",".join(first["overrides"])}' if first['overrides'] else ''), '',
           f'| config | batching | R | ms/step | ms/replica | per replica ÷ '
           f'R={first["replica_counts"][0]} | compile s |', '|---|---|---|---|---|---|---|']
  for result in results:
    for row in result['rows']:
      lines.append(f'| {result["name"]} | {row["batching"]} | {row["replicas"]} | '
                   f'{1e3 * row["step_s"]:.1f} | {1e3 * row["replica_s"]:.1f} | '
                   f'{row["ratio_replica_time_to_first"]:.3f} | {row["compile_s"]:.1f} |')
  return '\n'.join(lines)
