"""Test setup: 8 simulated CPU devices (set before JAX starts) and small shared fixtures."""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import helpers  # noqa: E402


@pytest.fixture(scope='session')
def tiny_npz(tmp_path_factory):
  """A learnable 28×28 greyscale dataset (class = which quadrant is bright), saved as .npz."""
  path = tmp_path_factory.mktemp('data') / 'tiny.npz'
  helpers.write_quadrant_npz(str(path), num_train=256, num_test=64)
  return str(path)


@pytest.fixture(scope='session')
def eight_devices():
  devices = jax.devices()
  if len(devices) < 8:
    pytest.skip('needs 8 (simulated) devices')
  return devices


def pytest_configure(config):
  del config
  np.set_printoptions(precision=4)
