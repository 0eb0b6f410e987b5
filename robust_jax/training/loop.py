"""The training loop: data on device, one compiled step, logging, evaluation and checkpoints.

`train_and_evaluate(config, workdir)` validates the config, locks `workdir` for this run
(`robust_jax.training.workdir_lock`), checks that it holds this experiment (`robust_jax.training.workdir`), restores
the newest intact checkpoint in it if there is one (so rerunning the same command resumes; damaged
ones are skipped, `robust_jax.training.checkpointing`), trains `num_steps` steps (or `num_epochs` epochs)
with a progress bar, logs one JSON line per `log_every_steps` and TensorBoard summaries (each line
says how many steps its means cover: the first after a resume covers only the steps since the
resume), evaluates clean test accuracy on the test set (its first `eval.num_examples`; 0 = all)
every `eval_every_epochs` and at the end, and checkpoints
every `checkpoint_every_steps`, every `checkpoint_every_minutes` and at the end. SIGTERM or SIGINT
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
from robust_jax.training import preemption
from robust_jax.training import state as train_state, step as train_step, workdir as workdir_lib
from robust_jax.training import workdir_lock

__all__ = ['NonFiniteLossError', 'train_and_evaluate']


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class _MetricBuffer:
  """Holds per-step device metrics until the next log, so steps never wait for the host."""

  def __init__(self):
    self._pending, self._since = [], time.perf_counter()

  def add(self, metrics) -> None:
    self._pending.append(metrics)

  def flush(self, step: int, batch_size: int) -> dict[str, float] | None:
    """Mean of the buffered metrics, images/s and the number of steps averaged (the first line
    after a resume covers only the steps since the resume); raises NonFiniteLossError on a bad
    loss."""
    if not self._pending:
      return None
    fetched = jax.device_get(self._pending)
    losses = np.array([m['loss'] for m in fetched])
    if not np.all(np.isfinite(losses)):
      bad = step - len(losses) + int(np.argmin(np.isfinite(losses))) + 1
      raise NonFiniteLossError(f'loss became {losses[~np.isfinite(losses)][0]} at step {bad}; '
                               'stopping, the last good checkpoint is kept')
    now = time.perf_counter()
    means = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
    means['images_per_s'] = len(fetched) * batch_size / (now - self._since)
    means['steps_averaged'] = len(fetched)  # fewer than log_every_steps after a resume
    self._pending, self._since = [], now
    return means


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
  results.json), or {'stopped_at_step': step} when the run stopped early with a
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
  optimizer, schedule = optim.make_optimizer(config.optimizer, steps_per_epoch, total_steps)
  workdir_lib.require_shared_storage(workdir)
  checkpoint_dir = os.path.join(workdir, 'checkpoints')
  checkpoint_steps = checkpointing.saved_steps(checkpoint_dir)
  workdir_lib.claim(workdir, config, checkpoint_steps[-1] if checkpoint_steps else None,
                    allow_config_change, steps_per_epoch=steps_per_epoch, splits=splits)

  train_split = pipeline.put_split(splits.train, mesh)
  test_split = splits.test.first(config.eval.num_examples or len(splits.test))
  model = build_model(config.model, spec, objectives.build_feature_transforms(config),
                      compute_dtype=config.train.compute_dtype)
  init_key, data_key, step_key = jax.random.split(jax.random.key(config.seed), 3)
  step_fn = train_step.make_train_step(
      objectives.build_loss_fn(config, model, spec.num_classes), optimizer,
      data.augment_fn_for(config.dataset),
      step_key, mesh, config.train.log_grad_norm)
  epoch_batches = pipeline.make_epoch_batches_fn(mesh, train_split.num_examples, batch_size)
  take_batch = jax.jit(lambda batches, i: jax.tree.map(lambda a: a[i], batches),
                       out_shardings=sharding.batch_sharded(mesh))

  state = jax.jit(lambda key: train_state.init_train_state(model, optimizer, key, spec.image_shape),
                  out_shardings=sharding.replicated(mesh))(init_key)
  checkpointer = checkpointing.Checkpointer(
      checkpoint_dir, config.train.max_checkpoints_to_keep,
      keep_steps=workdir_lib.protected_steps(workdir, checkpoint_steps),
      run_id=workdir_lib.run_id(workdir))
  restored, damaged = checkpointer.restore_latest(state)
  state = restored or state
  step = start_step = int(state.step)
  writer = metric_writer.MetricWriter(workdir, resume_step=step)
  periodic = periodic_evaluation.PeriodicEvaluation(
      config, model, mesh, splits, test_split, data.eval_input_fn_for(config.dataset), workdir,
      workdir_lib.run_id(workdir), step)

  buffer = _MetricBuffer()
  progress = tqdm.tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True,
                       disable=jax.process_index() != 0)
  notes = [f'{note}; resuming from step {step}' for note in damaged]
  unused = optim.unused_boundaries(config.optimizer, steps_per_epoch, total_steps)
  if unused:
    notes.append(f'note: config.optimizer.boundaries_epochs {unused} fall at or after the end of '
                 f'this {total_steps}-step run, so their learning-rate decays never apply')
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
  eval_metrics = batches = batches_epoch = None
  # (step, test accuracy) of every evaluation: those logged before this invocation, then its own.
  evaluations = metric_writer.logged_values(workdir, 'test/accuracy', up_to_step=step)
  with preemption.StopSignals() as signals:  # also while the last checkpoint is written
    try:
      while step < total_steps:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:
          batches, batches_epoch = epoch_batches(train_split.images, train_split.labels,
                                                 jax.random.fold_in(data_key, epoch)), epoch
        state, metrics = step_fn(state, take_batch(batches, index))
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
          logged['learning_rate'] = float(schedule(step - 1))
          writer.write(step, logged)
          progress.set_postfix(epoch=f'{step / steps_per_epoch:.2f}', loss=f'{logged["loss"]:.4f}',
                               acc=f'{logged["accuracy"]:.3f}',
                               **{rate_label: f'{logged["images_per_s"]:.0f}'})
        epoch_done = step % steps_per_epoch == 0
        if (epoch_done and (step // steps_per_epoch) % config.train.eval_every_epochs == 0
            or step == total_steps):
          progress.set_description(f'evaluating on {len(test_split)} test {noun}')
          evaluated = periodic.evaluate(state)
          progress.set_description('')
          for name, metrics in evaluated.items():
            writer.write(step, metrics, prefix=name)
          eval_metrics = evaluated['test']
          evaluations.append((step, eval_metrics['accuracy']))
          periodic.select(step, evaluated, state)
          progress.write(f'epoch {step / steps_per_epoch:.3g}: ' + _describe(evaluated))
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
      periodic.close()
      writer.close()

  if eval_metrics is None:  # the run had already finished: evaluate the restored state
    evaluated = periodic.evaluate(state)
    eval_metrics = evaluated['test']
    evaluations = evaluations or [(step, eval_metrics['accuracy'])]
  best_step, best_accuracy = max(evaluations, key=lambda e: e[1])
  results = {'test_accuracy': eval_metrics['accuracy'], 'test_loss': eval_metrics['loss'],
             'best_test_accuracy': best_accuracy, 'best_test_step': best_step,
             'steps': step, 'epochs': step / steps_per_epoch,
             'num_test_examples': len(test_split), 'modality': spec.modality,
             **{f'{name}_{key}': value for name, metrics in evaluated.items()
                for key, value in metrics.items() if name != 'test' or key == 'robust_accuracy'},
             'num_validation_examples': periodic.sizes.get('validation', 0),
             'selected': periodic.selected(), 'evaluation_seconds': periodic.seconds,
             **sharding.device_facts(mesh)}
  if not np.isfinite(results['test_loss']):  # e.g. a damaged checkpoint from before checksums
    raise NonFiniteLossError(
        f'test loss is {results["test_loss"]} at step {step}, so results.json is not written; if '
        f'the checkpoint at step {step} is damaged, move {checkpoint_dir}/{step} away and rerun')
  if jax.process_index() == 0:
    json_utils.dump(results, os.path.join(workdir, 'results.json'))
    learning_curves.plot_learning_curves(workdir, steps_per_epoch,
                                         results['selected'].get('step'))
  return results
