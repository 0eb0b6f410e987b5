r"""Trains one experiment config.

    python -m robust_jax.main --config=configs/fashion_mnist_cnn.py --workdir=/tmp/fmnist_cnn \
        [--config.optimizer.learning_rate=3e-3] [--config.adversary.name=pgd] \
        [--config=configs/x.py:variant] [--allow_config_change]

`--config=FILE[:VARIANT]` names the config; each `--config.KEY=VALUE` overrides one value of it
(`robust_jax.config_overrides`): component switches such as `--config.adversary.name=pgd` first,
with that component's defaults, then every other override, then the whole config is validated.
Rerunning the same command resumes from the newest checkpoint in --workdir.
"""
from __future__ import annotations

import functools
import sys

from absl import app, flags, logging

from robust_jax import config_overrides, config_schema, runs, train
from robust_jax.data import DatasetError

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
  try:
    config = runs.load_config_file(spec)
  except (OSError, ValueError) as e:  # a missing file, an unknown variant
    raise config_schema.ConfigError(f'--config={spec}: {e}') from None
  return config_overrides.apply_overrides(config, overrides)


def main(argv, overrides: list[str]):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep orbax's INFO lines off the progress bar
  try:
    config = load_config(_CONFIG.value, overrides)
    results = train.train_and_evaluate(config, _WORKDIR.value,
                                       allow_config_change=_ALLOW_CONFIG_CHANGE.value)
  except (config_schema.ConfigError, DatasetError) as e:
    sys.exit(f'error: {e}')
  if 'stopped_at_step' in results:
    print(f'interrupted by {results.get("signal", "request")}: saved a checkpoint at step '
          f'{results["stopped_at_step"]} in {_WORKDIR.value}; rerun the same command to resume')
    return
  print(f'test accuracy: {results["test_accuracy"]:.4f} on {results["num_test_examples"]} test '
        f'images after {results["epochs"]:g} epochs ({results["steps"]} steps)')


if __name__ == '__main__':
  try:
    remaining_argv, config_overrides_given = config_overrides.split_argv(sys.argv)
  except config_schema.ConfigError as error:
    sys.exit(f'error: {error}')
  app.run(functools.partial(main, overrides=config_overrides_given), argv=remaining_argv)
