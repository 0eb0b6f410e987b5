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
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags, logging

from robust_jax import attacks, checkpointing, config_schema, data, json_utils, robustness
from robust_jax.runs import load_run

__all__ = ['main']

_WORKDIR = flags.DEFINE_string('workdir', None, 'A training workdir (config.json + checkpoints).')
_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'A checkpoint directory W/checkpoints/STEP.')
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
    if not value.isdigit():
      raise ValueError(f'--autoattack_settings={item!r}: the value must be an int >= 1')
    values[name] = int(value)
  return attacks.AutoAttackSettings(**values)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  step = None
  workdir = _WORKDIR.value
  if _CHECKPOINT.value:
    checkpoint = os.path.abspath(_CHECKPOINT.value.rstrip('/'))
    workdir, step = os.path.dirname(os.path.dirname(checkpoint)), int(os.path.basename(checkpoint))
  if not workdir:
    sys.exit('error: give --workdir or --checkpoint')
  try:
    autoattack_budgets = autoattack_settings(_PRESET.value, _AUTOATTACK_SETTINGS.value)
    if _PRESET.value and _ATTACKS.value:
      raise ValueError(f'--attacks: the preset {_PRESET.value!r} picks its attacks; drop --attacks')
  except ValueError as e:
    sys.exit(f'error: {e}')
  try:
    config, model, params, model_state, splits, mesh = load_run(workdir, step)
    settings = config.robustness
    if _EPSILONS.value:
      settings.epsilons = tuple(_EPSILONS.value)
    if _ATTACKS.value:
      settings.attacks = tuple(_ATTACKS.value)
    if _NUM_EXAMPLES.value is not None:
      settings.num_examples = _NUM_EXAMPLES.value
    config_schema.check_section('config.robustness', settings, robustness.SCHEMA)
  except (config_schema.ConfigError, data.DatasetError, FileNotFoundError) as e:
    sys.exit(f'error: {e}')
  if step is None:  # load_run restored the newest checkpoint
    step = checkpointing.saved_steps(os.path.join(workdir, 'checkpoints'))[-1]
  if _PRESET.value:
    results = robustness.evaluate_autoattack(model, params, model_state, splits.test, settings,
                                             mesh, preset=_PRESET.value,
                                             autoattack_settings=autoattack_budgets,
                                             checkpoint_step=step)
  else:
    results = robustness.evaluate(model, params, model_state, splits.test, settings, mesh,
                                  checkpoint_step=step)
  output_dir = _OUTPUT_DIR.value or os.path.join(workdir, _PRESET.value or 'robustness')
  os.makedirs(output_dir, exist_ok=True)
  table = robustness.markdown_table(results)
  json_utils.dump(results, os.path.join(output_dir, 'robustness.json'))
  with open(os.path.join(output_dir, 'robustness.md'), 'w') as f:
    f.write(table + '\n')
  robustness.plot(results, os.path.join(output_dir, 'robustness.png'),
                  title=f'{config.model.name} on {config.dataset.name}')
  print(table)
  print('\n'.join(robustness.sanity_report(results)))
  print(f'wrote {output_dir}/robustness.{{json,md,png}}')


if __name__ == '__main__':
  app.run(main)
