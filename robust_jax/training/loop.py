"""The training loop: data on device, one compiled step, logging, evaluation and checkpoints.

`train_and_evaluate(config, workdir)` validates the config, locks `workdir` for this run
(`robust_jax.training.workdir_lock`), checks that it holds this experiment (`robust_jax.training.workdir`), restores
the newest intact checkpoint in it if there is one (so rerunning the same command resumes; damaged
ones are skipped, `robust_jax.training.checkpointing`), trains `num_steps` steps (or `num_epochs` epochs)
with a progress bar, logs one JSON line per `log_every_steps` and TensorBoard summaries (each line
says how many steps its means cover: the first after a resume covers only the steps since the
resume), evaluates clean test accuracy on the test set (its first `eval.num_examples`; 0 = all)
every `eval_every_epochs` and at the end, and checkpoints
every `checkpoint_every_steps`, every `checkpoint_every_minutes` and at the end. With `train.seeds` or
`train.sweep` it trains R replicas in one program (`robust_jax.training.replicas`; each in
`W/replicas/NAME`, `robust_jax.training.run_layout`). SIGTERM or SIGINT
(preemption, Ctrl-C) checkpoints at the next step and returns (`robust_jax.training.preemption`). A
non-finite loss stops the run and keeps the last good checkpoint; results.json is written only with
a finite test loss. A resumed run ends with exactly the parameters of an uninterrupted one (on the
same devices; resumed on another device count, up to float rounding), and logs every step once:
data order, augmentation and every random draw are functions of (seed, step), and each step's
logging and evaluation happen before its checkpoint.
"""
from __future__ import annotations

import os
import time

import jax
import numpy as np
import tqdm

from robust_jax import data, errors, json_utils, objectives, sharding
from robust_jax.config import schema as config_schema, validation
from robust_jax.data import pipeline
from robust_jax.evaluation import learning_curves
from robust_jax.models import build_model
from robust_jax.training import checkpointing, metric_writer, optim, periodic_evaluation
from robust_jax.training import preemption, replicas, run_layout
from robust_jax.training import state as train_state, workdir as workdir_lib
from robust_jax.training import workdir_lock

__all__ = ['NonFiniteLossError', 'train_and_evaluate']


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class _MetricBuffer:
  """Holds per-step device metrics until the next log, so steps never wait for the host."""

  def __init__(self, layout: run_layout.RunLayout):
    self._layout, self._pending, self._since = layout, [], time.perf_counter()

  def add(self, metrics) -> None:
    self._pending.append(metrics)

  def flush(self, step: int, batch_size: int) -> list[dict[str, float]] | None:
    """Per run, the mean of the buffered metrics, images/s and the number of steps averaged (the
    first line after a resume covers only the steps since the resume); raises
    NonFiniteLossError on a bad loss of any run."""
    if not self._pending:
      return None
    runs = self._layout.split_metrics(jax.device_get(self._pending))
    now = time.perf_counter()
    logged = []
    for name, columns in zip(self._layout.names, runs):
      losses = columns['loss']
      if not np.all(np.isfinite(losses)):
        bad = step - len(losses) + int(np.argmin(np.isfinite(losses))) + 1
        which = f' of replica {name}' if name else ''
        raise NonFiniteLossError(f'loss{which} became {losses[~np.isfinite(losses)][0]} at step '
                                 f'{bad}; stopping, the last good checkpoint is kept')
      means = {k: float(np.mean(v)) for k, v in columns.items()}
      means['images_per_s'] = len(losses) * batch_size / (now - self._since)
      means['steps_averaged'] = len(losses)  # fewer than log_every_steps after a resume
      logged.append(means)
    self._pending, self._since = [], now
    return logged


def _describe(evaluated: dict[str, dict[str, float]]) -> str:
  """'test accuracy 0.9012, test loss 0.2871, validation accuracy 0.9050, ...' of an evaluation."""
  return ', '.join(f'{name} {key.replace("_", " ")} {value:.4f}'
                   for name, metrics in evaluated.items() for key, value in metrics.items())


def train_and_evaluate(config, workdir: str, *, stop_after_steps: int | None = None,
                       devices=None, allow_config_change: bool = False) -> dict:
  """Trains `config` in `workdir` and returns the final clean test metrics.

  Returns {'test_accuracy', 'test_loss' (at the last step), 'best_test_accuracy',
  'best_test_step' (over every evaluation of the run, resumed parts included: the AMP code reports
  the best epoch), 'steps', 'epochs', 'num_test_examples', 'modality' ('image' or 'text'),
  'devices' (their count), 'backend', 'device_kind', 'jax_version', the last evaluation's
  'validation_accuracy', 'validation_loss' and the '*_robust_accuracy' where measured,
  'num_validation_examples', 'selected' ({'metric', 'step', 'value', 'checkpoint'}: the best
  checkpoint, `periodic_evaluation`) and 'evaluation_seconds'} (also written to
  results.json); for replicas, {'replicas': {name: those results}, 'points': mean ± std per sweep
  point, 'num_replicas', and the shared facts} (`replicas.summarise`), each replica's results
  also in its folder; or {'stopped_at_step': step} when the run stopped early with a
  checkpoint at `step`, plus 'signal': 'SIGTERM' or 'SIGINT' when a signal stopped it. The first
  line printed names the devices (`sharding.describe`).

  devices: the devices to train on; default `config.train.num_devices` of each host's devices
    (0 = all); when given, that key must be 0 or their count (`sharding.select_devices`).
  stop_after_steps: stop (with a checkpoint) after this many steps of this invocation, for
    time-limited job queues; rerunning continues where it stopped.
  allow_config_change: resume although `config` differs from the workdir's in keys that keep every
    array shape (see `robust_jax.training.workdir.claim`); the change is recorded in config_history.jsonl.

  Raises `ConfigError` before anything is written when `config.train.require_accelerator` is set
  and the devices are CPUs, or the batch does not split over them; `workdir.WorkdirError` (a
  `ConfigError`) when the workdir holds another experiment, was trained on other data or not
  every process can see it, or a ConfigError of the schedule in steps, with nothing written but
  the lock (removed again), and its subclass
  `workdir_lock.WorkdirLockedError` at once when another run is training in it (the lock is held
  until this returns or raises). A damaged checkpoint is skipped with a printed line, and training
  resumes from the newest intact one; `checkpointing.CheckpointError` when none is intact.
  """
  validation.validate_config(config)
  sharding.maybe_initialize_distributed(config.distributed)
  mesh = sharding.make_mesh(sharding.select_devices(config.train.num_devices, devices))
  sharding.require_accelerator(config, mesh)
  sharding.check_batch(config.train.batch_size, mesh)
  if jax.process_index() == 0:
    print(sharding.describe(mesh), flush=True)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.hold(workdir):
    return _train(config, workdir, mesh, stop_after_steps, allow_config_change)


def _train(config, workdir: str, mesh, stop_after_steps: int | None,
           allow_config_change: bool) -> dict:
  """`train_and_evaluate` once this run holds `workdir`."""
  batch_size = config.train.batch_size
  spec = data.spec_for(config.dataset)
  rate_label = 'txt_s' if spec.modality == 'text' else 'img_s'  # examples/s in the progress bar
  noun = 'texts' if spec.modality == 'text' else 'images'
  splits = data.load_splits(config.dataset)
  if len(splits.train) < batch_size:
    raise config_schema.ConfigError(f'config.train.batch_size={batch_size}: larger than the '
                                    f'{len(splits.train)} training examples')
  steps_per_epoch = pipeline.steps_per_epoch(len(splits.train), batch_size)
  total_steps = config.train.num_steps or config.train.num_epochs * steps_per_epoch
  # The schedule's checks in steps refuse a config before the workdir records it.
  layout = run_layout.RunLayout(config, workdir, mesh)
  # The first run's optimizer gives every run's state its structure: a swept weight decay is
  # positive in every replica (`replicas.replica_specs`), although the config's may be 0.
  optimizer, _ = optim.make_optimizer(layout.configs[0].optimizer, steps_per_epoch, total_steps)
  schedules = [optim.make_schedule(c.optimizer, steps_per_epoch, total_steps)
               for c in layout.configs]
  workdir_lib.require_shared_storage(workdir)
  checkpoint_dir = os.path.join(workdir, 'checkpoints')
  checkpoint_steps = checkpointing.saved_steps(checkpoint_dir)
  workdir_lib.claim(workdir, config, checkpoint_steps[-1] if checkpoint_steps else None,
                    allow_config_change, steps_per_epoch=steps_per_epoch, splits=splits)
  if layout.stacked:
    workdir_lib.claim_replicas(workdir, layout.folders, layout.configs, splits)

  train_split = pipeline.put_split(splits.train, mesh)
  test_split = splits.test.first(config.eval.num_examples or len(splits.test))
  model = build_model(config.model, spec, objectives.build_feature_transforms(config),
                      compute_dtype=config.train.compute_dtype)
  step_fn = layout.make_step(model, spec.num_classes, data.augment_fn_for(config.dataset),
                             steps_per_epoch, total_steps)
  epoch_batches = pipeline.make_epoch_batches_fn(mesh, train_split.num_examples, batch_size)

  state = layout.init_state(
      lambda key: train_state.init_train_state(model, optimizer, key, spec.image_shape))
  checkpointer = checkpointing.Checkpointer(
      checkpoint_dir, config.train.max_checkpoints_to_keep,
      keep_steps=workdir_lib.protected_steps(workdir, checkpoint_steps),
      run_id=workdir_lib.run_id(workdir))
  restored, damaged = checkpointer.restore_latest(state)
  state = restored or state
  step = start_step = int(jax.device_get(state.step).flat[0] if layout.stacked else state.step)
  writers = [metric_writer.MetricWriter(folder, resume_step=step) for folder in layout.folders]
  periodic = periodic_evaluation.PeriodicEvaluation(
      config, model, mesh, splits, test_split, data.eval_input_fn_for(config.dataset))
  selections = [periodic_evaluation.BestCheckpoint(c, folder, workdir_lib.run_id(folder), step)
                for c, folder in zip(layout.configs, layout.folders)]

  buffer = _MetricBuffer(layout)
  progress = tqdm.tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True,
                       disable=jax.process_index() != 0)
  notes = [f'{note}; resuming from step {step}' for note in damaged]
  unused = optim.unused_boundaries(config.optimizer, steps_per_epoch, total_steps)
  if unused:
    notes.append(f'note: config.optimizer.boundaries_epochs {unused} fall at or after the end of '
                 f'this {total_steps}-step run, so their learning-rate decays never apply')
  if layout.stacked:
    notes.append(f'training {layout.count} replicas in one program: {", ".join(layout.names)} '
                 f'({replicas.batching_for(config, mesh.devices.flat[0].platform)}; each in '
                 f'{os.path.join(workdir, run_layout.REPLICAS_FOLDER)}/NAME)')
  if step:
    notes.append(f'resuming from the checkpoint at step {step} in {workdir}')
  if jax.process_index() == 0:  # tqdm.write prints whatever `disable` says
    for note in notes:
      progress.write(note)
  # One process decides alone only where no other process exists; otherwise the processes agree
  # on signals and the checkpoint clock at logging steps (`preemption.any_process`).
  agree_every = 1 if jax.process_count() == 1 else config.train.log_every_steps
  checkpoint_seconds = 60.0 * config.train.checkpoint_every_minutes
  last_save = time.monotonic()
  evaluated = batches = batches_epoch = None
  # per run, (step, test accuracy) of every evaluation: those logged before this invocation, then
  # its own.
  evaluations = [metric_writer.logged_values(folder, 'test/accuracy', up_to_step=step)
                 for folder in layout.folders]
  with preemption.StopSignals() as signals:  # also while the last checkpoint is written
    try:
      while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:
          batches, batches_epoch = layout.epoch_batches(epoch_batches, train_split, epoch), epoch
        state, metrics = step_fn(state, layout.take_batch(batches, index))
        buffer.add(metrics)
        step += 1
        progress.update()
        clock_ran_out, signalled = False, False
        if step % agree_every == 0:
          clock_ran_out, signalled = preemption.any_process(
              (0 < checkpoint_seconds <= time.monotonic() - last_save,
               signals.received is not None))
        stopping = signalled or (stop_after_steps is not None
                                 and step - start_step >= stop_after_steps)
        if step % config.train.log_every_steps == 0 or step == total_steps or stopping:
          logged = buffer.flush(step, batch_size)
          for writer, schedule, run_logged in zip(writers, schedules, logged):
            writer.write(step, run_logged | {'learning_rate': float(schedule(step - 1))})
          progress.set_postfix(epoch=f'{step / steps_per_epoch:.2f}',
                               loss=_mean_text(logged, 'loss', '.4f'),
                               acc=_mean_text(logged, 'accuracy', '.3f'),
                               **{rate_label: f'{logged[0]["images_per_s"] * layout.count:.0f}'})
        epoch_done = step % steps_per_epoch == 0
        if (epoch_done and (step // steps_per_epoch) % config.train.eval_every_epochs == 0
            or step == total_steps):
          progress.set_description(f'evaluating on {len(test_split)} test {noun}')
          evaluated = periodic_evaluation.evaluate_runs(layout, periodic, state, step, writers,
                                                         selections, evaluations)
          progress.set_description('')
          for name, run_evaluated in zip(layout.names, evaluated):
            progress.write(f'epoch {step / steps_per_epoch:.3g}{" " + name if name else ""}: '
                           + _describe(run_evaluated))
        if (step % config.train.checkpoint_every_steps == 0 or step == total_steps
            or clock_ran_out or stopping):
          buffer.flush(step, batch_size)
          checkpointer.save(step, state)
          last_save = time.monotonic()
        if stopping:
          stopped = {'stopped_at_step': step}
          return stopped | ({'signal': signals.received or 'another process'} if signalled else {})
    finally:
      progress.close()
      checkpointer.close()
      for closing in writers + selections:
        closing.close()

  if evaluated is None:  # the run had already finished: evaluate the restored state
    evaluated = [periodic.evaluate(layout.run_state(state, run)) for run in range(layout.count)]
    evaluations = [logged or [(step, run_evaluated['test']['accuracy'])]
                   for logged, run_evaluated in zip(evaluations, evaluated)]
  facts = {'steps': step, 'epochs': step / steps_per_epoch, 'num_test_examples': len(test_split),
           'modality': spec.modality, 'num_validation_examples': periodic.sizes.get('validation', 0),
           'evaluation_seconds': periodic.seconds, **sharding.device_facts(mesh)}
  results = [periodic_evaluation.run_results(run_evaluated, run_evaluations, selection, facts)
             for run_evaluated, run_evaluations, selection
             in zip(evaluated, evaluations, selections)]
  for run, run_results in enumerate(results):
    if not np.isfinite(run_results['test_loss']):  # e.g. a damaged checkpoint from before checksums
      raise NonFiniteLossError(
          f'test loss{" of replica " + layout.names[run] if layout.stacked else ""} is '
          f'{run_results["test_loss"]} at step {step}, so results.json is not written; if the '
          f'checkpoint at step {step} is damaged, move {checkpoint_dir}/{step} away and rerun')
  if layout.stacked:  # each replica folder becomes an ordinary finished workdir
    for run, folder in enumerate(layout.folders):
      export = checkpointing.Checkpointer(os.path.join(folder, 'checkpoints'), max_to_keep=1,
                                          run_id=workdir_lib.run_id(folder))
      export.save(step, layout.run_state(state, run))
      export.close()
  if jax.process_index() == 0:
    for folder, run_results in zip(layout.folders, results):
      json_utils.dump(run_results, os.path.join(folder, 'results.json'))
      learning_curves.plot_learning_curves(folder, steps_per_epoch,
                                           run_results['selected'].get('step'))
  if not layout.stacked:
    return results[0]
  summary = replicas.summarise(layout.specs, results) | facts
  if jax.process_index() == 0:
    json_utils.dump(summary, os.path.join(workdir, 'results.json'))
  return summary


def _mean_text(logged: list[dict[str, float]], key: str, spec: str) -> str:
  """'0.4312', or for replicas the mean and range '0.4312 (0.41–0.45)', of `key` in `logged`."""
  values = [run[key] for run in logged]
  mean = format(float(np.mean(values)), spec)
  return mean if len(values) == 1 else f'{mean} ({min(values):.2f}–{max(values):.2f})'
