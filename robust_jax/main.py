r"""Trains one experiment config.

    python -m robust_jax.main --config=configs/fashion_mnist_cnn.py --workdir=/tmp/fmnist_cnn \
        [--config.optimizer.learning_rate=3e-3] [--config=configs/x.py:variant]

Rerunning the same command resumes from the newest checkpoint in --workdir.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from robust_jax import config_schema, train
from robust_jax.data import DatasetError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for config, metrics and checkpoints.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep orbax's INFO lines off the progress bar
  try:
    results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (config_schema.ConfigError, DatasetError) as e:
    sys.exit(f'error: {e}')
  print(f'test accuracy: {results["test_accuracy"]:.4f} on {results["num_test_examples"]} test '
        f'images after {results["epochs"]:g} epochs ({results["steps"]} steps)')


if __name__ == '__main__':
  app.run(main)
