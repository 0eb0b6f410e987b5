r"""Trains one experiment config.

    python -m robust_jax.main --config=configs/fashion_mnist_cnn.py --workdir=/tmp/fmnist_cnn \
        [--config.optimizer.learning_rate=3e-3] [--config.adversary.name=pgd] \
        [--config=configs/x.py:variant] [--allow_config_change]

`--config=FILE[:VARIANT]` names the config; each `--config.KEY=VALUE` overrides one value of it
(`robust_jax.config.overrides`): component switches such as `--config.adversary.name=pgd` first,
with that component's defaults, then every other override, then the whole config is validated.
Rerunning the same command resumes from the newest checkpoint in --workdir.

A mistake the user can fix (a config value, the data, the workdir, a damaged checkpoint, a NaN
loss, a full disk) ends the command with one line, `error: ...`, and exit status 1
(`robust_jax.cli`); `ROBUST_JAX_TRACEBACK=1` shows the full traceback instead.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from robust_jax import cli
from robust_jax.config import files as config_files, overrides as config_overrides
from robust_jax.config import schema as config_schema
from robust_jax.training import loop as train

__all__ = ['load_config', 'main']

_CONFIG = flags.DEFINE_string('config', None, "Experiment config file, 'configs/x.py[:variant]'; "
                              'override its values with --config.KEY=VALUE.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for config, metrics and checkpoints.')
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    'allow_config_change', False, "Resume a workdir whose config.json differs from this config in "
    'keys that keep every array shape (the change is recorded in the workdir).')
flags.mark_flags_as_required(['config', 'workdir'])


def load_config(spec: str, overrides: list[str]):
  """The config file `spec` ('configs/x.py:variant') with `overrides` ('KEY=VALUE') applied."""
  return config_overrides.apply_overrides(config_files.load_config_file(spec), overrides)


def main(argv, overrides: list[str]):
  if len(argv) > 1:
    raise config_schema.ConfigError(
        f'unexpected argument {argv[1]!r}: robust_jax.main takes only flags, --config=FILE, '
        '--workdir=W and --config.KEY=VALUE (a value with spaces needs quotes)')
  logging.set_verbosity(logging.WARNING)  # keep orbax's INFO lines off the progress bar
  if not _WORKDIR.value.strip():
    raise config_schema.ConfigError('--workdir is empty: name the folder that holds (or will '
                                    'hold) the run, e.g. --workdir=workdirs/my_run')
  config = load_config(_CONFIG.value, overrides)
  results = train.train_and_evaluate(config, _WORKDIR.value,
                                     allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  if 'stopped_at_step' in results:
    print(f'interrupted by {results.get("signal", "request")}: saved a checkpoint at step '
          f'{results["stopped_at_step"]} in {_WORKDIR.value}; rerun the same command to resume')
    return
  noun = 'texts' if results['modality'] == 'text' else 'images'
  print(f'test accuracy: {results["test_accuracy"]:.4f} on {results["num_test_examples"]} test '
        f'{noun} after {results["epochs"]:.3g} epochs ({results["steps"]} steps)')


if __name__ == '__main__':
  remaining_argv, config_overrides_given = cli.run(lambda: config_overrides.split_argv(sys.argv))
  app.run(lambda argv: cli.run(lambda: main(argv, config_overrides_given)), argv=remaining_argv)
