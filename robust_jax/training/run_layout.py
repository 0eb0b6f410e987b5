"""What the training loop trains: one run, or R replicas stacked on a leading axis.

The loop (`robust_jax.training.loop`) is written once for both. A `RunLayout` holds the configs
of the runs it trains (one, or each replica's, `robust_jax.training.replicas`), their folders (the
workdir, or `W/replicas/NAME`: each an ordinary workdir once the run finishes), their keys, and
how states, batches and metrics carry the runs: unchanged for one run, with a leading replica axis
for replicas. Every key is derived from a run's own seed exactly as a single run derives it:
`init, data, step = split(key(seed), 3)`.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from robust_jax import objectives, sharding
from robust_jax.training import optim, replicas, step as train_step

__all__ = ['REPLICAS_FOLDER', 'RunLayout']

REPLICAS_FOLDER = 'replicas'


class RunLayout:
  """The runs one invocation of the loop trains, and how their arrays are laid out.

  configs: each run's config (a replica's is the separate run it equals); folders: where each
  run's metrics, best checkpoint, results.json and (replicas, when finished) final checkpoint go;
  stacked: True for replicas (leading axis R on states, batches and metrics).
  """

  def __init__(self, config, workdir: str, mesh):
    specs = replicas.replica_specs(config)
    self.config, self.mesh, self.specs, self.stacked = config, mesh, specs, bool(specs)
    self.configs = [spec.config for spec in specs] or [config]
    self.names = [spec.name for spec in specs] or ['']
    self.folders = ([os.path.join(workdir, REPLICAS_FOLDER, spec.name) for spec in specs]
                    or [workdir])
    keys = [jax.random.split(jax.random.key(c.seed), 3) for c in self.configs]
    self._init_keys, self._data_keys, self._step_keys = (
        [run_keys[i] for run_keys in keys] for i in range(3))
    replicated = sharding.replicated(mesh)
    self._take = jax.jit(replicas.take, static_argnums=1, out_shardings=replicated)
    if self.stacked:
      self._stack = jax.jit(lambda *trees: replicas.stack(list(trees)),
                            out_shardings=replicated)
      self._take_batch = jax.jit(lambda batches, i: jax.tree.map(lambda a: a[:, i], batches),
                                 out_shardings=sharding.replica_batch_sharded(mesh))
    else:
      self._take_batch = jax.jit(lambda batches, i: jax.tree.map(lambda a: a[i], batches),
                                 out_shardings=sharding.batch_sharded(mesh))

  @property
  def count(self) -> int:
    return len(self.configs)

  def make_step(self, model, num_classes: int, augment_fn, steps_per_epoch: int,
                total_steps: int):
    """The jitted `step(state, batch) -> (state, metrics)` of every run at once."""
    def parts(config):
      optimizer, _ = optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps,
                                          validate_steps=False)
      return objectives.build_loss_fn(config, model, num_classes), optimizer

    if not self.stacked:
      return train_step.make_train_step(*parts(self.config), augment_fn, self._step_keys[0],
                                        self.mesh, self.config.train.log_grad_norm)

    def build_step(config):
      return train_step.step_function(*parts(config), augment_fn, config.train.log_grad_norm)
    batching = replicas.batching_for(self.config, self.mesh.devices.flat[0].platform)
    return train_step.make_replica_train_step(
        build_step, self.configs, tuple(self.config.train.sweep), jax.numpy.stack(self._step_keys),
        self.mesh, batching)

  def init_state(self, init_fn):
    """`init_fn(key)` of every run's initialisation key (stacked for replicas), replicated."""
    init = jax.jit(init_fn, out_shardings=sharding.replicated(self.mesh))
    states = [init(key) for key in self._init_keys]
    return self._stack(*states) if self.stacked else states[0]

  def epoch_batches(self, epoch_batches_fn, split, epoch: int):
    """Every run's batches of `epoch` (`pipeline.make_epoch_batches_fn`), each run's data key."""
    batches = [epoch_batches_fn(split.images, split.labels, jax.random.fold_in(key, epoch))
               for key in self._data_keys]
    return self._stack(*batches) if self.stacked else batches[0]

  def take_batch(self, batches, index: int):
    """Batch `index` of the epoch's batches, of every run."""
    return self._take_batch(batches, index)

  def run_state(self, state, run: int):
    """Run `run`'s state (the state itself for one run), replicated on the mesh."""
    return self._take(state, run) if self.stacked else state

  def split_metrics(self, fetched: list[dict]) -> list[dict[str, np.ndarray]]:
    """Per run, {name: (steps,) values} of host metrics fetched at `steps` steps."""
    columns = {name: np.stack([np.asarray(m[name]) for m in fetched]) for name in fetched[0]}
    if not self.stacked:
      return [columns]
    return [{name: values[:, run] for name, values in columns.items()}
            for run in range(self.count)]
