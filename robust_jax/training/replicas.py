"""Replicas: R independent runs (seeds, and a sweep of float hyper-parameters) in one program.

    --config.train.seeds='(0,1,2)'                                       3 replicas, seeds 0 1 2
    --config.train.sweep='("weight_perturbation.epsilon",)' \\
    --config.train.sweep_values='(0.1,0.5,1.0)'                         x 3 values of AMP's ε

One run trains R = len(seeds) × len(sweep_values) replicas (seeds outermost; no seeds = the
config's seed). Replica r is exactly the separate run of its `ReplicaSpec.config` (its seed and
swept values, `train.seeds` and `train.sweep` emptied): its own initialisation, data order,
augmentation, dropout and attack keys, derived from its seed as a separate run derives them
(`tests/training/test_replicas.py` compares the two).

A sweep names config keys and, per replica point, a value of each (`sweep_values`: one tuple per
point, or one number per point when one key is swept). Only keys that enter the step as numbers
may be swept: the optimizer's `SWEEPABLE` keys (learning rate, weight decay) and the keys each
chosen component registers as `sweepable` (AMP's ε and ζ, DropAttack's ε's, TRADES' β, ε and
step, the MDL weight, label smoothing, PGD/FGSM training ε and step). A key that would change a
shape or the program is refused in one line, as is a weight decay of 0 beside others (it removes
the decay step from the program).

How the step runs the replicas, `train.replica_batching`:
  'unroll'      the R steps side by side in one `jax.jit`, each built with its values as
                constants: one program, compiled once (its compile time grows with R).
  'sequential'  one compiled step per sweep point, shared by its seeds and called replica after
                replica: each replica runs its separate run's program; compile time does not grow
                with the number of seeds.
  'vmap'        one step `jax.vmap`ped over the replica axis, swept values traced: on an
                accelerator the R small steps fill the device together; a convolution with R
                kernels becomes a grouped convolution.
  'auto'        (default) 'unroll' on CPUs, 'vmap' on accelerators. On 2 CPU cores unrolled
                replicas take 0.77-1.01× the time per replica of one, sequential ones 0.98-1.01×,
                and vmapped ones 2.0-2.8×: XLA's CPU grouped convolutions are slow
                (`experiments/benchmark.py --replicas`, docs/replicas.md).
Each way the batch of every replica is split over all the run's devices (data parallel, as a
single run), and the replica axis is unsharded: each replica computes what its separate run
computes on the same devices.
"""
from __future__ import annotations

import dataclasses
import itertools
import numbers

import jax
import ml_collections
import numpy as np

from robust_jax import objectives
from robust_jax.config import schema as cs
from robust_jax.training import optim

__all__ = ['BATCHINGS', 'REPLICA_KEYS', 'ReplicaSpec', 'batching_for', 'folder_name', 'replica_specs',
           'stack', 'summarise', 'sweepable_keys', 'take', 'traced_config', 'uses_replicas']

BATCHINGS = ('auto', 'sequential', 'unroll', 'vmap')
# the keys that name the replicas: a resume never changes them (`training.workdir`)
REPLICA_KEYS = ('train.seeds', 'train.sweep', 'train.sweep_values')


@dataclasses.dataclass(frozen=True)
class ReplicaSpec:
  """Replica `index`: its seed, its swept values {'optimizer.learning_rate': 0.1, ...}, its folder
  name ('seed0', 'seed0-learning_rate0.1') and `config`, the separate run it equals."""

  index: int
  seed: int
  values: dict[str, float]
  name: str
  config: ml_collections.ConfigDict


def uses_replicas(config) -> bool:
  """True when `config.train` asks for replicas (seeds or a sweep, or gives sweep values)."""
  return bool(config.train.seeds or config.train.sweep or config.train.sweep_values)


def sweepable_keys(config) -> tuple[str, ...]:
  """The config paths this config may sweep: the optimizer's and its chosen components'."""
  keys = [f'optimizer.{key}' for key in optim.SWEEPABLE]
  for section, registry in objectives.SECTIONS.items():
    entry = registry.lookup(f'config.{section}.name', config[section].name)
    keys += [f'{section}.{key}' for key in entry.sweepable]
  return tuple(keys)


def _points(config) -> list[tuple[float, ...]]:
  """`train.sweep_values` as one tuple of len(sweep) numbers per point; ConfigError otherwise."""
  keys, values = tuple(config.train.sweep), tuple(config.train.sweep_values)
  where = f'config.train.sweep_values={values!r}'
  if not keys:
    if values:
      raise cs.ConfigError(f'{where}: set config.train.sweep to the keys these values are for')
    return [()]
  if not values:
    raise cs.ConfigError(f'config.train.sweep={keys!r}: give the values of each replica in '
                         'config.train.sweep_values')
  points = [(value,) if isinstance(value, numbers.Real) and len(keys) == 1 else value
            for value in values]
  for point in points:
    if (not isinstance(point, (tuple, list)) or len(point) != len(keys)
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in point)):
      raise cs.ConfigError(f'{where}: each point must be {len(keys)} number(s), one per key of '
                           f'config.train.sweep={keys!r}; got {point!r}')
  if len(set(map(tuple, points))) != len(points):
    raise cs.ConfigError(f'{where}: a point is repeated (two replicas would train the same run; '
                         'add seeds with config.train.seeds instead)')
  return [tuple(point) for point in points]


def folder_name(seed: int, values: dict[str, float]) -> str:
  """'seed0', or with a sweep 'seed0-epsilon0.5-learning_rate0.1' (each key's last part)."""
  return '-'.join([f'seed{seed}'] + [f'{key.rsplit(".", 1)[-1]}{value:g}'
                                     for key, value in values.items()])


def _set_key(config, path: str, value) -> None:
  section, key = path.split('.')
  config[section][key] = value


def replica_specs(config) -> list[ReplicaSpec]:
  """The replicas of `config`, seeds outermost; [] when it asks for none. ConfigError in one line
  for a key that may not be swept or a malformed sweep (`validation.validate_config` also
  validates each replica's config as a run of its own)."""
  if not uses_replicas(config):
    return []
  keys = tuple(config.train.sweep)
  allowed = sweepable_keys(config)
  for key in keys:
    if key not in allowed:
      raise cs.ConfigError(
          f'config.train.sweep: {key!r} cannot be swept (it changes a shape or the program, or '
          f'is not a key of this config); this config sweeps: {", ".join(allowed)}')
  points = _points(config)
  if 'optimizer.weight_decay' in keys:
    decays = {point[keys.index('optimizer.weight_decay')] for point in points}
    if 0 in decays and len(decays) > 1:
      raise cs.ConfigError(f'config.train.sweep_values: optimizer.weight_decay 0 beside '
                           f'{sorted(decays - {0})[0]} (0 removes the decay step from the '
                           'program); sweep positive values, or run weight decay 0 apart')
  specs = []
  for seed, point in itertools.product(tuple(config.train.seeds) or (config.seed,), points):
    values = dict(zip(keys, point))
    replica = ml_collections.ConfigDict(config.to_dict())
    replica.seed = seed
    replica.train.update(seeds=(), sweep=(), sweep_values=())
    for key, value in values.items():
      _set_key(replica, key, type(replica[key.split('.')[0]][key.split('.')[1]])(value))
    specs.append(ReplicaSpec(len(specs), seed, values, folder_name(seed, values), replica))
  names = [spec.name for spec in specs]
  twice = next((name for name in names if names.count(name) > 1), None)
  if twice:
    raise cs.ConfigError(f'config.train.sweep_values={tuple(config.train.sweep_values)!r}: two '
                         f'points share the folder name {twice!r} (values equal to 6 significant '
                         'digits); use values that differ in their first 6 digits')
  return specs


def batching_for(config, platform: str) -> str:
  """'sequential', 'unroll' or 'vmap': `train.replica_batching`, 'auto' resolved for `platform`
  ('cpu', 'gpu', 'tpu')."""
  batching = config.train.replica_batching
  if batching == 'auto':
    return 'unroll' if platform == 'cpu' else 'vmap'
  return batching


def traced_config(config, values: dict[str, jax.Array]) -> ml_collections.ConfigDict:
  """A copy of `config` whose swept keys hold `values` (traced under `jax.vmap`): the config the
  builders see inside a vmapped replica step (they pass these keys on as numbers only)."""
  replica = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  for key, value in values.items():
    _set_key(replica, key, value)
  return replica


def stack(trees: list):
  """One pytree whose leaves carry a leading replica axis."""
  return jax.tree.map(lambda *leaves: jax.numpy.stack(leaves), *trees)


def take(tree, index: int):
  """Replica `index` of a stacked pytree."""
  return jax.tree.map(lambda leaf: leaf[index], tree)


def summarise(specs: list[ReplicaSpec], results: list[dict]) -> dict:
  """The replica run's results.json: {'replicas': {name: that replica's results.json}, 'points':
  one entry per sweep point (a single one without a sweep) with its 'values', 'seeds' and the
  mean and standard deviation (ddof 0) over its seeds of each replica's 'test_accuracy',
  'best_test_accuracy' and 'test_loss'}."""
  points: dict[tuple, list[int]] = {}
  for spec in specs:
    points.setdefault(tuple(spec.values.items()), []).append(spec.index)
  summary = []
  for values, members in points.items():
    entry = {'values': dict(values), 'seeds': [specs[r].seed for r in members]}
    for key in ('test_accuracy', 'best_test_accuracy', 'test_loss'):
      column = np.array([results[r][key] for r in members])
      entry |= {f'{key}_mean': float(column.mean()), f'{key}_std': float(column.std())}
    summary.append(entry)
  return {'replicas': {spec.name: result for spec, result in zip(specs, results)},
          'points': summary, 'num_replicas': len(specs)}
