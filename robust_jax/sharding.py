"""The device mesh: one `data` axis over the devices a run uses; state is replicated.

`select_devices` picks them (`config.train.num_devices`: the first N of each process, 0 = all),
`require_accelerator` refuses a paper-scale config that would train on CPUs, `check_batch` refuses
a global batch the devices do not divide, and `describe`/`device_facts` state what a run trains on
(its first line and results.json). `jax.make_mesh` defaults to Explicit axis types in recent JAX;
robust_jax uses Auto axes so that XLA propagates shardings from the batch and the
`in_shardings`/`out_shardings` of the jitted steps.
"""
from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from robust_jax.config.schema import ConfigError

__all__ = ['CUDA_INSTALL', 'DATA_AXIS', 'batch_sharded', 'check_batch', 'describe', 'device_facts',
           'make_mesh', 'maybe_initialize_distributed', 'replica_batch_sharded', 'replicated',
           'require_accelerator', 'select_devices']

DATA_AXIS = 'data'
# The install line of README.md's "GPU and TPU hosts" (Python 3.11; constraints-latest.txt on 3.12).
CUDA_INSTALL = 'python3 -m pip install -c constraints.txt -c constraints-cuda.txt -e ".[cuda12]"'


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


def select_devices(num_devices: int, devices=None) -> list:
  """The devices a run trains on.

  `devices` given (the Python API, e.g. tests): those, and `num_devices` must be 0 or their count.
  Otherwise the first `num_devices` devices of each process in `jax.devices()` order (0 = all of
  them), so a run of P processes uses num_devices × P devices; more than a process has is refused.
  """
  if devices is not None:
    if num_devices not in (0, len(devices)):
      raise ConfigError(f'config.train.num_devices={num_devices}: the caller passed '
                        f'{len(devices)} devices; use 0 (those devices) or {len(devices)}')
    return list(devices)
  local = jax.local_device_count()
  if num_devices > local:
    raise ConfigError(f'config.train.num_devices={num_devices}: more than the {local} devices '
                      f'JAX sees in this process ({jax.default_backend()}); use 0 (all of them) '
                      f'or at most {local}')
  if not num_devices:
    return jax.devices()
  return [device for process in range(jax.process_count())
          for device in [d for d in jax.devices() if d.process_index == process][:num_devices]]


def require_accelerator(config, mesh: Mesh) -> None:
  """ConfigError naming the install line when `config.train.require_accelerator` is set and every
  device of `mesh` is a CPU."""
  if config.train.require_accelerator and {d.platform for d in mesh.devices.flat} == {'cpu'}:
    raise ConfigError(
        f'config.train.require_accelerator=True: this {config.dataset.name} {config.model.name} '
        'config is paper-scale, but JAX sees only CPU devices; install the CUDA build with '
        f"'{CUDA_INSTALL}' (README.md: GPU and TPU hosts), or set "
        '--config.train.require_accelerator=False to train on the CPU anyway')


def check_batch(batch_size: int, mesh: Mesh) -> None:
  """ConfigError when the global batch does not split evenly over the mesh, naming the
  `train.num_devices` values (per process) that would split it."""
  if batch_size % mesh.size == 0:
    return
  processes = jax.process_count()
  counts = [n for n in range(jax.local_device_count(), 0, -1) if batch_size % (n * processes) == 0]
  where = f' ({mesh.size // processes} on each of {processes} processes)' if processes > 1 else ''
  fix = f'use a batch that {mesh.size} divides'
  if counts:
    which = ('the counts per process whose total divides' if processes > 1
             else 'the device counts that divide')
    others = f' (or {", ".join(map(str, counts[1:]))}: {which} {batch_size})' if counts[1:] else ''
    fix = f'set --config.train.num_devices={counts[0]}{others}, or a batch that {mesh.size} divides'
  raise ConfigError(f'config.train.batch_size={batch_size}: must be divisible by the {mesh.size} '
                    f'devices the run uses{where}; {fix}')


def device_facts(mesh: Mesh) -> dict:
  """{'devices': count, 'backend': 'gpu', 'device_kind': 'NVIDIA H100 80GB HBM3', 'jax_version'}
  of `mesh`, for results.json."""
  kinds = sorted({d.device_kind for d in mesh.devices.flat})
  return {'devices': mesh.size, 'backend': mesh.devices.flat[0].platform,
          'device_kind': ', '.join(kinds), 'jax_version': jax.__version__}


def describe(mesh: Mesh) -> str:
  """'training on 1 device: cpu (TFRT_CPU_0); jax 0.10.2', or for a subset of several GPUs
  'training on 2 of 8 devices: gpu, NVIDIA H100 80GB HBM3 (cuda:0 … cuda:1); jax 0.10.2'."""
  facts, devices = device_facts(mesh), list(mesh.devices.flat)
  of = f' of {jax.device_count()}' if mesh.size < jax.device_count() else ''
  kind = '' if facts['device_kind'] == facts['backend'] else f', {facts["device_kind"]}'
  names = str(devices[0]) if len(devices) == 1 else f'{devices[0]} … {devices[-1]}'
  processes = f', {jax.process_count()} processes' if jax.process_count() > 1 else ''
  plural = 's' if of or mesh.size > 1 else ''
  return (f'training on {mesh.size}{of} device{plural}: '
          f'{facts["backend"]}{kind} ({names}{processes}); jax {facts["jax_version"]}')


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh with axis `data` over `devices` (default: all devices of all processes)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def replica_batch_sharded(mesh: Mesh) -> NamedSharding:
  """(R, B, ...) batches of replicas: each replica's batch split over the devices."""
  return NamedSharding(mesh, P(None, DATA_AXIS))
