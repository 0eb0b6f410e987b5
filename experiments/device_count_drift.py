r"""How far runs on different device counts drift apart: the same config trained on 1, 2 and 4
simulated CPU devices, the parameters and test accuracy compared after each logged step.

    python experiments/device_count_drift.py --steps=150 \
        --output=experiments/results/device_count_drift/drift.json

Every random draw is keyed by the example's index in the global batch, so the runs compute the same
function; only the order of floating-point sums differs (the batch means of the loss and gradient,
batch-norm statistics). This measures what that leaves after N steps of the offline default
(`configs/fashion_mnist_cnn.py`, real Fashion-MNIST): the largest parameter difference and the test
accuracy of each device count.
"""
from __future__ import annotations

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import json  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from robust_jax.training import loop as train  # noqa: E402
from robust_jax.config import files as config_files
from robust_jax.training import runs

_STEPS = flags.DEFINE_integer('steps', 150, 'Training steps of each run.')
_DEVICES = flags.DEFINE_list('devices', ['1', '2', '4'], 'Device counts to compare.')
_OUTPUT = flags.DEFINE_string('output', 'device_count_drift.json', 'Where the JSON record goes.')


def _train(num_devices: int, folder: str):
  config = config_files.load_config_file('configs/fashion_mnist_cnn.py')
  config.train.update(num_steps=_STEPS.value, checkpoint_every_steps=_STEPS.value)
  workdir = os.path.join(folder, f'devices{num_devices}')
  results = train.train_and_evaluate(config, workdir, devices=jax.devices()[:num_devices])
  params = runs.load_run(workdir, devices=jax.devices()[:1])[2]
  return results, jax.device_get(params)


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as folder:
    runs_by_count = {int(n): _train(int(n), folder) for n in _DEVICES.value}
  counts = sorted(runs_by_count)
  reference_results, reference_params = runs_by_count[counts[0]]
  record = {'config': 'configs/fashion_mnist_cnn.py', 'steps': _STEPS.value,
            'jax': jax.__version__, 'runs': {}}
  for count in counts:
    results, params = runs_by_count[count]
    differences = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))),
                                               params, reference_params))
    scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(reference_params))
    record['runs'][count] = {'test_accuracy': results['test_accuracy'],
                             'test_loss': results['test_loss'],
                             'max_abs_parameter_difference': max(differences),
                             'largest_parameter': scale}
    print(f'{count} device(s): test accuracy {results["test_accuracy"]:.4f}, largest parameter '
          f'difference to {counts[0]} device(s) {max(differences):.2e}')
  os.makedirs(os.path.dirname(os.path.abspath(_OUTPUT.value)), exist_ok=True)
  with open(_OUTPUT.value, 'w') as f:
    json.dump(record, f, indent=2)
  print(f'wrote {_OUTPUT.value}')


if __name__ == '__main__':
  app.run(main)
