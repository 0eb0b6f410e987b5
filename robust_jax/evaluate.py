r"""Robustness evaluation of a trained run.

    python -m robust_jax.evaluate --workdir=W [--epsilons=0,0.05,0.1] [--num_examples=1000]
        [--attacks=fgsm,pgd]
    python -m robust_jax.evaluate --checkpoint=W/checkpoints/1404
    python -m robust_jax.evaluate --workdir=W --preset=autoattack [--num_examples=1000]
        [--autoattack_settings=apgd_steps=10,square_queries=500]

Reads the run's `config.json` (its `robustness` section gives the attacks and their budgets; flags
override it), restores the newest checkpoint (or the one named), and writes
`robustness.json`, `robustness.md` and `robustness.png` into `--output_dir` (default
W/robustness), printing the table, a warning beside every failed sanity check and, when none
failed, the checks that were made (only those the attacks and ε values run allow).

`--preset=autoattack` (or `autoattack_rand` for a model random in its `model_mode`) runs
AutoAttack beside FGSM and PGD-k instead (`robustness.evaluate_autoattack`): robust accuracy after
each attack, each attack's seconds and the gradient-masking flags, written into `--output_dir`
(default W/PRESET, so W/robustness is kept). `--autoattack_settings` shrinks its budgets (keys of
`attacks.AutoAttackSettings`).

A checkpoint is evaluated with the config that trained it (`runs.load_run`); a damaged one is
refused. A text run (token ids: no pixels to attack) gets its clean accuracy on the first
`--num_examples` test texts. Where the results go is checked before any attack runs, and every
expected failure is one line, `error: ...`, with exit status 1 (`robust_jax.cli`).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile

from absl import app, flags, logging

from robust_jax import attacks, cli, data, json_utils
from robust_jax.config import schema as config_schema
from robust_jax.data import pipeline
from robust_jax.evaluation import clean_accuracy, robustness
from robust_jax.training import checkpointing, periodic_evaluation
from robust_jax.training.runs import load_run

__all__ = ['checkpoint_location', 'evaluate_text', 'main', 'require_writable']

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir (config.json + checkpoints).')
_CHECKPOINT = flags.DEFINE_string(
    'checkpoint', None, "A checkpoint directory W/checkpoints/STEP or W/best/STEP, or 'best' "
    '(with --workdir=W: the checkpoint train.select_by selected).')
_EPSILONS = flags.DEFINE_list('epsilons', None, "Override robustness.epsilons, e.g. '0,8/255'.")
_ATTACKS = flags.DEFINE_list('attacks', None, 'Override robustness.attacks, e.g. fgsm,pgd.')
_NUM_EXAMPLES = flags.DEFINE_integer('num_examples', None, 'Override robustness.num_examples.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None,
                                  'Default: WORKDIR/robustness, or WORKDIR/PRESET with --preset.')
_PRESET = flags.DEFINE_string('preset', None, 'autoattack or autoattack_rand: run AutoAttack.')
_AUTOATTACK_SETTINGS = flags.DEFINE_list(
    'autoattack_settings', [], 'With --preset: budgets, e.g. apgd_steps=10,square_queries=500.')


def autoattack_settings(preset: str | None, items: list[str]) -> attacks.AutoAttackSettings:
  """The settings of `--autoattack_settings=key=value,...`; ValueError (one line) on a bad item."""
  if preset is not None and preset not in robustness.PRESETS:
    raise ValueError(f'--preset={preset!r}: must be one of '
                     f'{", ".join(map(repr, robustness.PRESETS))}')
  if items and preset is None:
    raise ValueError('--autoattack_settings: needs --preset')
  known = [field.name for field in dataclasses.fields(attacks.AutoAttackSettings)]
  values = {}
  for item in items:
    name, _, value = item.partition('=')
    if name not in known:
      raise ValueError(f'--autoattack_settings={item!r}: unknown key {name!r}; known keys: '
                       f'{", ".join(known)}')
    if not value.isdecimal():  # isdigit() also takes '²', which int() refuses
      raise ValueError(f'--autoattack_settings={item!r}: the value must be an int >= 1')
    values[name] = int(value)
  return attacks.AutoAttackSettings(**values)


def checkpoint_location(checkpoint: str) -> tuple[str, str, int]:
  """(workdir, folder, step) of `--checkpoint=W/checkpoints/STEP` or `W/best/STEP` (folder
  'checkpoints' or 'best'); ConfigError (one line) otherwise."""
  path = os.path.abspath(checkpoint.rstrip('/'))
  folder, name = os.path.split(path)
  if (os.path.basename(folder) not in ('checkpoints', periodic_evaluation.BEST_FOLDER)
      or not name.isdecimal()):
    raise config_schema.ConfigError(
        f'--checkpoint={checkpoint}: must name a step folder W/checkpoints/STEP (STEP a number, '
        f'e.g. W/checkpoints/{_a_step(folder) or 1000}); for the newest use --workdir=W, for the best '
        '--workdir=W --checkpoint=best')
  return os.path.dirname(folder), os.path.basename(folder), int(name)


def best_checkpoint(workdir: str | None) -> tuple[str, str, int]:
  """(workdir, 'best', step) of `--workdir=W --checkpoint=best`: the checkpoint the run selected
  by `train.select_by`; ConfigError (one line) without --workdir or without one."""
  if not workdir:
    raise config_schema.ConfigError('--checkpoint=best: name the run with --workdir=W (its best '
                                    'checkpoint is W/best/STEP)')
  step = _a_step(os.path.join(workdir, periodic_evaluation.BEST_FOLDER))
  if step is None:
    raise config_schema.ConfigError(
        f'--checkpoint=best: {workdir} has no best checkpoint ({periodic_evaluation.BEST_FOLDER}/'
        'STEP, saved at each evaluation that improves train.select_by); evaluate the newest '
        'with --workdir alone')
  return workdir, periodic_evaluation.BEST_FOLDER, step


def _a_step(folder: str) -> int | None:
  steps = checkpointing.saved_steps(folder)
  return steps[-1] if steps else None


def require_writable(output_dir: str) -> None:
  """Creates `output_dir` and checks a file can be written in it, before any attack runs.

  Raises ConfigError when it is (or lies inside) the `checkpoints` folder of a workdir, where a
  folder named like a step would pass for a checkpoint, and OSError (reported in one line by
  `robust_jax.cli`) when it is a file or not writable.
  """
  folder = os.path.abspath(output_dir)
  while os.path.dirname(folder) != folder:
    if (os.path.basename(folder) == 'checkpoints'
        and os.path.isfile(os.path.join(os.path.dirname(folder), 'config.json'))):
      raise config_schema.ConfigError(
          f'--output_dir={output_dir}: inside {folder}, the checkpoints folder of a workdir, which '
          'must hold checkpoints only; use another folder (the default is W/robustness)')
    folder = os.path.dirname(folder)
  os.makedirs(output_dir, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=output_dir, prefix='.write_check'):
    pass


def evaluate_text(model, params, model_state, test_split, config, mesh, step: int) -> dict:
  """Clean accuracy of a text run: its inputs are token ids, so no pixel attack applies."""
  if config.robustness.num_examples:
    test_split = test_split.first(config.robustness.num_examples)
  evaluate = clean_accuracy.make_clean_eval_fn(model, mesh, data.eval_input_fn_for(config.dataset))
  batches = pipeline.make_eval_batches(test_split, config.eval.batch_size, mesh)
  metrics = {k: float(v) for k, v in evaluate(params, model_state, batches).items()}
  return {'modality': 'text', 'accuracy': metrics['accuracy'], 'loss': metrics['loss'],
          'num_examples': len(test_split), 'checkpoint_step': step}


def _override_settings(settings) -> None:
  if _EPSILONS.value:
    settings.epsilons = tuple(_EPSILONS.value)
  if _ATTACKS.value:
    settings.attacks = tuple(_ATTACKS.value)
  if _NUM_EXAMPLES.value is not None:
    settings.num_examples = _NUM_EXAMPLES.value
  config_schema.check_section('config.robustness', settings, robustness.SCHEMA)


def _write(output_dir: str, results: dict, table: str) -> None:
  json_utils.dump(results, os.path.join(output_dir, 'robustness.json'))
  with open(os.path.join(output_dir, 'robustness.md'), 'w') as f:
    f.write(table + '\n')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  step, workdir, folder = None, _WORKDIR.value, 'checkpoints'
  if _CHECKPOINT.value == 'best':
    workdir, folder, step = best_checkpoint(workdir)
  elif _CHECKPOINT.value:
    workdir, folder, step = checkpoint_location(_CHECKPOINT.value)
    if _WORKDIR.value and os.path.realpath(_WORKDIR.value) != os.path.realpath(workdir):
      raise config_schema.ConfigError(
          f'--workdir={_WORKDIR.value} and --checkpoint={_CHECKPOINT.value} name different '
          f'workdirs; give only --checkpoint (its workdir is {workdir})')
  for flag in (_EPSILONS, _ATTACKS):
    if flag.value is not None and not flag.value:  # given, but empty
      raise config_schema.ConfigError(f'--{flag.name} is empty: give at least one value, or drop '
                                      "the flag for the config's")
  if not workdir:
    raise config_schema.ConfigError('give --workdir=W (the newest checkpoint) or '
                                    '--checkpoint=W/checkpoints/STEP')
  try:
    autoattack_budgets = autoattack_settings(_PRESET.value, _AUTOATTACK_SETTINGS.value)
    if _PRESET.value and _ATTACKS.value:
      raise ValueError(f'--attacks: the preset {_PRESET.value!r} picks its attacks; drop --attacks')
  except ValueError as e:
    raise config_schema.ConfigError(str(e)) from None
  output_dir = _OUTPUT_DIR.value or os.path.join(workdir, _PRESET.value or 'robustness')
  if step is None:  # the newest now, named in the results even if a training saves another
    steps = checkpointing.saved_steps(os.path.join(workdir, folder))
    step = steps[-1] if steps else None
  config, model, params, model_state, splits, mesh = load_run(workdir, step, folder=folder)
  settings = config.robustness
  _override_settings(settings)
  text = data.spec_for(config.dataset).modality == 'text'
  if text and (_PRESET.value or _ATTACKS.value or _EPSILONS.value):
    raise config_schema.ConfigError(
        f'{workdir} is a text run ({config.dataset.name}): its inputs are token ids, so the pixel '
        'attacks of --preset, --attacks and --epsilons do not apply; drop them for clean accuracy')
  require_writable(output_dir)
  if text:
    results = evaluate_text(model, params, model_state, splits.test, config, mesh, step)
    table = (f'| test texts | clean accuracy (%) |\n|---|---|\n| {results["num_examples"]} | '
             f'{100 * results["accuracy"]:.2f} |\n\nText run (token ids): no pixels to attack; '
             f'checkpoint at step {step}.')
    _write(output_dir, results, table)
    print(table)
    print(f'wrote {output_dir}/robustness.{{json,md}}')
    return
  if _PRESET.value:
    results = robustness.evaluate_autoattack(model, params, model_state, splits.test, settings,
                                             mesh, preset=_PRESET.value,
                                             autoattack_settings=autoattack_budgets,
                                             checkpoint_step=step)
  else:
    results = robustness.evaluate(model, params, model_state, splits.test, settings, mesh,
                                  checkpoint_step=step)
  table = robustness.markdown_table(results)
  _write(output_dir, results, table)
  robustness.plot(results, os.path.join(output_dir, 'robustness.png'),
                  title=f'{config.model.name} on {config.dataset.name}')
  print(table)
  print('\n'.join(robustness.sanity_report(results)))
  print(f'wrote {output_dir}/robustness.{{json,md,png}}')


if __name__ == '__main__':
  app.run(lambda argv: cli.run(lambda: main(argv)))
