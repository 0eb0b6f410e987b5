"""What the training loop evaluates every `eval_every_epochs`, the checkpoint it selects, and the
results.json of each run (one, or each replica).

Every evaluation measures, in compiled code on the run's devices (padding masked):
  * clean accuracy and loss on the test set (its first `eval.num_examples`; 0 = all), as always;
  * with `dataset.validation_examples` > 0, the same on the validation split held out of training
    (`data.validation_split`);
  * with `eval.robust_examples` > 0, robust accuracy under the robustness section's PGD at its
    largest ε (`evaluation.robust_accuracy`) on the first `eval.robust_examples` examples of each.
The selection metric is `train.select_by` ('clean' or 'robust' accuracy) on the validation split
when there is one, else on the test set (what the AMP code does, kept for the paper rows). The
step with its highest value (the earliest of equal ones) is kept in `W/best/STEP`, apart from the
rolling checkpoints and never pruned by them; `robust_jax.evaluate --checkpoint=best` reads it.
A resumed run continues the selection from the values logged in metrics.jsonl.
"""
from __future__ import annotations

import os
import shutil
import time

import jax

from robust_jax.data import pipeline
from robust_jax.evaluation import clean_accuracy, robust_accuracy
from robust_jax.training import checkpointing, metric_writer

__all__ = ['BEST_FOLDER', 'BestCheckpoint', 'PeriodicEvaluation', 'evaluate_runs', 'run_results',
           'selection_metric']

BEST_FOLDER = 'best'


def selection_metric(config) -> str:
  """'validation/accuracy', 'test/robust_accuracy', ...: the metric `train.select_by` names."""
  split = 'validation' if config.dataset.validation_examples else 'test'
  return f'{split}/{"robust_accuracy" if config.train.select_by == "robust" else "accuracy"}'


class PeriodicEvaluation:
  """Clean (and robust) evaluation of the validation and test splits, compiled once per run."""

  def __init__(self, config, model, mesh, splits, test_split, input_fn):
    clean = clean_accuracy.make_clean_eval_fn(model, mesh, input_fn)
    robust = (robust_accuracy.make_robust_eval_fn(model, mesh, config.robustness)
              if config.eval.robust_examples else None)
    named = {'test': test_split}
    if splits.validation is not None:
      named['validation'] = splits.validation
    self._evaluations = {}
    for name, split in named.items():
      batches = pipeline.make_eval_batches(split, config.eval.batch_size, mesh)
      robust_batches = (pipeline.make_eval_batches(
          split.first(config.eval.robust_examples), config.robustness.batch_size, mesh)
                        if robust else None)
      self._evaluations[name] = (batches, robust_batches)
    self._clean, self._robust = clean, robust
    self._key = jax.random.key(config.robustness.seed)
    self.sizes = {name: len(split) for name, split in named.items()}
    self.seconds = 0.0

  def evaluate(self, state) -> dict[str, dict[str, float]]:
    """{'test': {'accuracy', 'loss'[, 'robust_accuracy']}[, 'validation': {...}]}."""
    start = time.monotonic()
    results = {}
    for name, (batches, robust_batches) in self._evaluations.items():
      metrics = self._clean(state.params, state.model_state, batches)
      if robust_batches is not None:
        metrics |= self._robust(state.params, state.model_state, robust_batches,
                                jax.random.fold_in(self._key, int(state.step)))
      results[name] = {k: float(v) for k, v in metrics.items()}
    self.seconds += time.monotonic() - start
    return results


class BestCheckpoint:
  """The selection metric's history in one run folder, and its best checkpoint in `W/best`."""

  def __init__(self, config, workdir: str, run_id: str, resume_step: int):
    self.metric = selection_metric(config)
    self.history = metric_writer.logged_values(workdir, self.metric, up_to_step=resume_step)
    best = os.path.join(workdir, BEST_FOLDER)
    if jax.process_index() == 0:  # a best step after the resume point is trained again
      for step in checkpointing.saved_steps(best):
        if step > resume_step:
          shutil.rmtree(os.path.join(best, str(step)))
    self._best = checkpointing.Checkpointer(best, max_to_keep=1, run_id=run_id)

  def select(self, step: int, results: dict[str, dict[str, float]], state) -> bool:
    """Records the selection metric of `results`; saves `state` as the best when it improves."""
    split, name = self.metric.split('/')
    value = results[split][name]
    improved = not self.history or value > max(v for _, v in self.history)
    self.history.append((step, value))
    if improved:  # written before the rolling checkpoint starts: two orbax managers finalising
      self._best.save(step, state)  # at once across processes can fail (seen on 2 processes)
      self._best.finish_saving()
    return improved

  def selected(self) -> dict:
    """{'metric', 'step', 'value'} of the best evaluation so far ({} before the first)."""
    if not self.history:
      return {}
    step, value = max(self.history, key=lambda e: e[1])
    return {'metric': self.metric, 'step': step, 'value': value,
            'checkpoint': f'{BEST_FOLDER}/{step}'}

  def close(self) -> None:
    self._best.close()


def evaluate_runs(layout, periodic: PeriodicEvaluation, state, step: int, writers,
                  selections: list[BestCheckpoint], evaluations: list[list[tuple[int, float]]]):
  """Evaluates every run of `layout` (`run_layout.RunLayout`: one run, or replicas) at `step`:
  logs each to its writer, records its selection metric (saving its best checkpoint) and its test
  accuracy in `evaluations`; returns the evaluations, per run."""
  evaluated = []
  for run in range(layout.count):
    run_state = layout.run_state(state, run)
    run_evaluated = periodic.evaluate(run_state)
    for name, metrics in run_evaluated.items():
      writers[run].write(step, metrics, prefix=name)
    evaluations[run].append((step, run_evaluated['test']['accuracy']))
    selections[run].select(step, run_evaluated, run_state)
    evaluated.append(run_evaluated)
  return evaluated


def run_results(evaluated, evaluations, selection: BestCheckpoint, facts: dict) -> dict:
  """One run's results.json: its last evaluation, its best test accuracy over `evaluations`
  ((step, accuracy), the AMP code reports the best epoch), its selection and `facts`."""
  best_step, best_accuracy = max(evaluations, key=lambda e: e[1])
  return {'test_accuracy': evaluated['test']['accuracy'], 'test_loss': evaluated['test']['loss'],
          'best_test_accuracy': best_accuracy, 'best_test_step': best_step,
          **{f'{name}_{key}': value for name, metrics in evaluated.items()
             for key, value in metrics.items() if name != 'test' or key == 'robust_accuracy'},
          'selected': selection.selected(), **facts}
