"""The device mesh: one `data` axis over every device of every host; state is replicated.

`jax.make_mesh` defaults to Explicit axis types in recent JAX; robust_jax uses Auto axes so that XLA
propagates shardings from the batch and the `in_shardings`/`out_shardings` of the jitted steps.
"""
from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = ['DATA_AXIS', 'batch_sharded', 'make_mesh', 'maybe_initialize_distributed', 'replicated']

DATA_AXIS = 'data'


def maybe_initialize_distributed(distributed_config) -> None:
  """Calls `jax.distributed.initialize` for multi-host runs when the config asks for it.

  Empty coordinator address / process counts let JAX detect them from the cluster (SLURM, TPU pods).
  """
  if not distributed_config.initialize:
    return
  kwargs = {}
  if distributed_config.coordinator_address:
    kwargs = dict(coordinator_address=distributed_config.coordinator_address,
                  num_processes=distributed_config.num_processes,
                  process_id=distributed_config.process_id)
  jax.distributed.initialize(**kwargs)


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis `data` over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))
