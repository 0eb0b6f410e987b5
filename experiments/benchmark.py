r"""Train-step throughput of robust_jax's general step vs a minimal hand-written JAX step, and
optionally vs a PyTorch twin of the same model and objective.

    python experiments/benchmark.py [--configs=configs/erm.py:fashion_mnist,configs/amp.py:...]
        [--rounds=7 --steps=10 --json_out=bench.json] [--set=train.batch_size=512,...]
        [--no_augment] [--torch [--torch_channels_last --torch_compile]]
    python experiments/benchmark.py --replicas=1,3,8 [--configs=...] [--rounds=5 --steps=2]

The first config is the ERM baseline the others' "× ERM" column divides by. `--set` applies
config overrides (`robust_jax/config/overrides.py`, 'KEY.PATH=VALUE', comma-separated) to every
config; `--no_augment` times the steps without the data augmentation (uint8 -> [0, 1] only).

Both JAX steps train the same model with the same objective and optimizer on synthetic data of the
dataset's shape (uint8 images, or for text token ids of random lengths between half and all of
`max_length`, on the device, sharded like training batches). Each round times
`--steps` steps of each step in turn, the order reversed every other round, so machine noise and
order hit all alike. Reported, after compilation: each step's median time over rounds, and each
ratio of two steps as the median of the per-round ratios (paired, so a slow round cancels). Prints
a table and one JSON line per config; with `--json_out` also writes the JSON, per-round times
included.

`--torch` (needs the optional `torch`) adds, for every config that has one
(`tests/oracles/torch_reference.py`, `config_kwargs`; others are listed as skipped), the PyTorch
twin's step on the same batch in the same rounds: plain eager by default, on the GPU when JAX
runs on one (CUDA; TF32 float32 matmuls there, as XLA's default precision), with as many
intra-op threads as XLA:CPU's pool ($PJRT_NPROC or $NPROC, else the CPUs this process may run on,
as XLA's `DefaultThreadPoolSize`), augmenting as robust_jax does unless `--no_augment`. Its
column "÷ PyTorch" is robust_jax's time / PyTorch's time (median of per-round ratios; < 1:
robust_jax is faster).

`--replicas=1,3,8` (`experiments/replica_benchmark.py`) instead times the train step of R replicas
(`train.seeds`) for each R, sequential, unrolled and vmapped, as the trainer builds it on one
device: compile time, median time per step and per replica, and the per-replica time ÷ R = 1's
(paired per round), for `--configs` if given, else ERM and PGD-10 AT of the default CNN. Its steps
take seconds: docs/benchmark.md times them with --rounds=5 --steps=2.
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

from experiments import replica_benchmark  # noqa: E402
from tests.oracles import reference_steps  # noqa: E402
from robust_jax import data, objectives, sharding  # noqa: E402
from robust_jax.config import overrides as config_overrides
from robust_jax.training import optim
from robust_jax.config import validation  # noqa: E402
from robust_jax.training import state as train_state, step as train_step
from robust_jax.data import pipeline  # noqa: E402
from robust_jax.models import build_model  # noqa: E402
from robust_jax.config.files import config_name, load_config_file  # noqa: E402

_CONFIGS = flags.DEFINE_list('configs', ['configs/fashion_mnist_cnn.py'],
                             'Config files (path.py:variant); the first is the ERM baseline.')
_ROUNDS = flags.DEFINE_integer('rounds', 7, 'Timed rounds (median is reported).')
_STEPS = flags.DEFINE_integer('steps', 10, 'Steps per timed round.')
_JSON_OUT = flags.DEFINE_string('json_out', '', 'Also write the JSON result here.')
_SET = flags.DEFINE_string('set', '', 'Config overrides for every config, comma-separated '
                           "KEY.PATH=VALUE (as --config.KEY.PATH=VALUE of robust_jax.main), e.g. "
                           "'train.batch_size=512,model.widths=(16, 32)'.")
_NO_AUGMENT = flags.DEFINE_bool('no_augment', False,
                                'Time the steps without data augmentation (uint8 -> [0, 1] only).')
_TORCH = flags.DEFINE_bool('torch', False, 'Also time the PyTorch twin of every config that has '
                           'one (tests/oracles/torch_reference.py; needs torch).')
_TORCH_CHANNELS_LAST = flags.DEFINE_bool('torch_channels_last', False,
                                         'PyTorch twin: channels_last memory format.')
_TORCH_COMPILE = flags.DEFINE_bool('torch_compile', False, 'PyTorch twin: torch.compile the model.')
_REPLICAS = flags.DEFINE_list('replicas', [], 'Replica mode (experiments/replica_benchmark.py): '
                              'time R replicas in one program for each R given, e.g. 1,3,8, '
                              'unrolled and vmapped, of --configs if given, else ERM and PGD-AT.')
_REPLICA_CONFIGS = ['configs/fashion_mnist_cnn.py', 'configs/fashion_mnist_adversarial.py:pgd']


def xla_cpu_threads() -> int:
  """The size of XLA:CPU's intra-op thread pool (xla/pjrt/utils.cc `DefaultThreadPoolSize`):
  $PJRT_NPROC or $NPROC when set to a number, else the CPUs this process may run on."""
  for name in ('PJRT_NPROC', 'NPROC'):
    if os.environ.get(name, '').isdigit():
      return max(int(os.environ[name]), 1)
  return len(os.sched_getaffinity(0))


def _time_steps(run_one, num_steps: int, wait=jax.block_until_ready) -> float:
  """Seconds per step over `num_steps` steps; `wait`s for the result before stopping the clock."""
  start = time.perf_counter()
  for _ in range(num_steps):
    result = run_one()
  wait(result)
  return (time.perf_counter() - start) / num_steps


def _pytorch_runner(config, spec, images: np.ndarray, labels: np.ndarray, augment: bool,
                    channels_last: bool, compile_model: bool):
  """(run one step, wait for its loss, description) of the config's PyTorch twin; ValueError (one
  line) when it has none."""
  import torch  # the optional extra: imported only with --torch

  from tests.oracles import torch_reference

  model_kwargs, step_kwargs = torch_reference.config_kwargs(config, spec)
  if not augment:
    step_kwargs['augmentation'] = 'none'
  device = 'cuda' if jax.default_backend() == 'gpu' and torch.cuda.is_available() else 'cpu'
  if device == 'cuda':
    torch.set_float32_matmul_precision('high')  # TF32 matmuls, as XLA's default on GPUs
  torch.set_num_threads(xla_cpu_threads())
  torch.manual_seed(0)
  model = torch_reference.make_model(**model_kwargs).to(device)
  step = torch_reference.make_train_step(model=model, **step_kwargs, channels_last=channels_last,
                                         compile=compile_model)
  torch_images = torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, 1))).to(device)
  torch_labels = torch.from_numpy(labels).long().to(device)
  info = {'version': torch.__version__, 'device': device, 'threads': torch.get_num_threads(),
          'channels_last': channels_last, 'compile': compile_model,
          'autocast_dtype': step_kwargs['autocast_dtype'],
          'float32_matmul_precision': torch.get_float32_matmul_precision(),
          'method': step_kwargs['method'],
          'augmentation': step_kwargs['augmentation']}
  return lambda: step(torch_images, torch_labels), lambda loss: loss.item(), info


def _synthetic_tokens(rng: np.random.Generator, batch_size: int, spec) -> np.ndarray:
  """int32 token ids (B, max_length): lengths uniform in [max_length / 2, max_length], ids
  uniform over the vocabulary's words (not <pad> = 0, <unk> = 1), <pad> after each length."""
  max_length = spec.image_shape[0]
  lengths = rng.integers(max(max_length // 2, 1), max_length + 1, batch_size)
  tokens = rng.integers(2, spec.vocab_size, (batch_size, max_length)).astype(np.int32)
  return np.where(np.arange(max_length) < lengths[:, None], tokens, 0).astype(np.int32)


def _synthetic_inputs(config, augment: bool):
  """(dataset spec, model, augment_fn, batch(rng) -> one synthetic host batch) of `config`."""
  spec = data.spec_for(config.dataset)
  batch_size = config.train.batch_size
  model = build_model(config.model, spec, objectives.build_feature_transforms(config),
                      compute_dtype=config.train.compute_dtype)
  text = spec.modality == 'text'
  augment_fn = (data.augment_fn_for(config.dataset) if augment or text  # text: the identity
                else pipeline.make_augment_fn('none', 0))

  def batch(rng: np.random.Generator) -> dict:
    return {'image': _synthetic_tokens(rng, batch_size, spec) if text else
            rng.integers(0, 256, (batch_size, *spec.image_shape), np.uint8),
            'label': rng.integers(0, spec.num_classes, batch_size).astype(np.int32)}

  return spec, model, augment_fn, batch


def _environment() -> dict:
  return {'platform': platform.platform(),
          'versions': {'jax': jax.__version__, 'flax': flax.__version__,
                       'optax': optax.__version__, 'python': platform.python_version()}}


def benchmark(config, rounds: int, steps: int, *, augment: bool = True, pytorch: bool = False,
              torch_channels_last: bool = False, torch_compile: bool = False) -> dict:
  validation.validate_config(config)
  mesh = sharding.make_mesh(sharding.select_devices(config.train.num_devices))
  spec, model, augment_fn, make_batch = _synthetic_inputs(config, augment)
  batch_size = config.train.batch_size
  optimizer, _ = optim.make_optimizer(config.optimizer, 100, 10_000)
  host_batch = make_batch(np.random.default_rng(0))
  batch = jax.device_put(host_batch, sharding.batch_sharded(mesh))
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

  runs = {'robust_jax': (run_general, jax.block_until_ready),
          'hand_written': (run_hand, jax.block_until_ready)}
  extra = {}
  if pytorch:
    try:
      run_torch, wait_torch, extra['pytorch'] = _pytorch_runner(
          config, spec, host_batch['image'], host_batch['label'], augment, torch_channels_last,
          torch_compile)
      runs['pytorch'] = (run_torch, wait_torch)
    except ValueError as error:
      extra['pytorch_skipped'] = str(error)
  for run, wait in runs.values():  # compile and warm up
    _time_steps(run, 2, wait)
  times = {name: [] for name in runs}
  for round_index in range(rounds):
    order = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
    for name in order:
      run, wait = runs[name]
      times[name].append(_time_steps(run, steps, wait))
  general_times, hand_times = times['robust_jax'], times['hand_written']
  general_s, hand_s = statistics.median(general_times), statistics.median(hand_times)
  if 'pytorch' in times:
    torch_times = times['pytorch']
    extra.update(pytorch_step_s=statistics.median(torch_times),
                 pytorch_images_per_s=batch_size / statistics.median(torch_times),
                 ratio_time_general_over_pytorch=statistics.median(
                     g / t for g, t in zip(general_times, torch_times)),
                 pytorch_round_s=torch_times)
  return {
      'config': {k: config[k].get('name') for k in ('model', *objectives.SECTIONS)},
      'dataset': spec.name, 'modality': spec.modality, 'global_batch': batch_size,
      'augment': augment,
      'robust_jax_step_s': general_s, 'hand_written_step_s': hand_s,
      'robust_jax_images_per_s': batch_size / general_s,
      'hand_written_images_per_s': batch_size / hand_s,
      'ratio_time_general_over_hand': statistics.median(
          g / h for g, h in zip(general_times, hand_times)),
      'robust_jax_round_s': general_times, 'hand_written_round_s': hand_times,
      **extra,
      'rounds': rounds, 'steps_per_round': steps,
      'device': f'{jax.devices()[0].device_kind} x{jax.device_count()}', **_environment(),
  }


def _main_replicas(overrides: list[str]) -> None:
  if _TORCH.value:
    raise app.UsageError('--torch does not apply to --replicas')
  results = []
  for spec in _CONFIGS.value if flags.FLAGS['configs'].present else _REPLICA_CONFIGS:
    config = config_overrides.apply_overrides(load_config_file(spec), overrides)
    data_spec, model, augment_fn, make_batch = _synthetic_inputs(config, not _NO_AUGMENT.value)
    results.append({'name': config_name(spec), 'overrides': overrides, **_environment(),
                    **replica_benchmark.benchmark_replicas(
                        config, [int(r) for r in _REPLICAS.value], _ROUNDS.value, _STEPS.value,
                        augment=not _NO_AUGMENT.value, spec=data_spec, model=model,
                        augment_fn=augment_fn, make_batch=make_batch)})
    print(json.dumps(results[-1]), flush=True)
  print('\n' + replica_benchmark.table(results))
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(results, f, indent=2)


def main(argv):
  del argv
  overrides = config_overrides.split_overrides(_SET.value)
  if _REPLICAS.value:
    _main_replicas(overrides)
    return
  results = []
  for spec in _CONFIGS.value:
    config = config_overrides.apply_overrides(load_config_file(spec), overrides)
    results.append({'name': config_name(spec), 'overrides': overrides,
                    **benchmark(config, _ROUNDS.value, _STEPS.value,
                                augment=not _NO_AUGMENT.value, pytorch=_TORCH.value,
                                torch_channels_last=_TORCH_CHANNELS_LAST.value,
                                torch_compile=_TORCH_COMPILE.value)})
    print(json.dumps(results[-1]), flush=True)
  first = results[0]
  print(f'\ndevice: {first["device"]}   jax {first["versions"]["jax"]}   '
        f'global batch {first["global_batch"]}   median of {first["rounds"]} rounds × '
        f'{first["steps_per_round"]} steps'
        + ('' if first['augment'] else '   without augmentation')
        + (f'   overrides {",".join(overrides)}' if overrides else ''))
  torch_info = next((r['pytorch'] for r in results if 'pytorch' in r), None)
  if torch_info:
    print(f'PyTorch {torch_info["version"]} on {torch_info["device"]}, {torch_info["threads"]} '
          f'threads (= XLA:CPU\'s pool), {"torch.compile" if torch_info["compile"] else "eager"}'
          f'{", channels_last" if torch_info["channels_last"] else ""}'
          f'{", autocast " + torch_info["autocast_dtype"] if torch_info["autocast_dtype"] else ""}')
  torch_columns = _TORCH.value
  modalities = {r['modality'] for r in results}
  rate = 'images/s' if modalities == {'image'} else 'texts/s' if modalities == {'text'} else (
      'examples/s')
  print(f'| config | robust_jax ms/step | {rate} | hand-written ms/step | time ratio to '
        'hand-written | time × ERM |' + (' PyTorch ms/step | ÷ PyTorch |' if torch_columns else '')
        + '\n|---|---|---|---|---|---|' + ('---|---|' if torch_columns else ''))
  for r in results:
    row = (f'| {r["name"]} | {1e3 * r["robust_jax_step_s"]:.1f} | '
           f'{r["robust_jax_images_per_s"]:.0f} | {1e3 * r["hand_written_step_s"]:.1f} | '
           f'{r["ratio_time_general_over_hand"]:.3f} | '
           f'{r["robust_jax_step_s"] / first["robust_jax_step_s"]:.2f} |')
    if torch_columns:
      row += (f' {1e3 * r["pytorch_step_s"]:.1f} | {r["ratio_time_general_over_pytorch"]:.3f} |'
              if 'pytorch_step_s' in r else ' — | — |')
    print(row)
  for r in results:
    if 'pytorch_skipped' in r:
      print(f'{r["name"]}: no PyTorch twin ({r["pytorch_skipped"]})')
  if _JSON_OUT.value:
    with open(_JSON_OUT.value, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main)
