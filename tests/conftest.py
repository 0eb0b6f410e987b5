"""Test setup: 8 simulated CPU devices (set before JAX starts) and small shared fixtures."""
import atexit
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# One XLA compilation cache per test session, shared by the xdist workers and the subprocesses
# the tests start (they inherit the environment): many tests compile the same tiny programs.
# Compiles under 0.2 s are not worth a disk entry. A cached program is the same program, so no
# result changes.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='robust_jax_tests_xla_')
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')

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


@pytest.fixture(scope='module')
def finished_run(tiny_npz, tmp_path_factory, eight_devices):
  """(config, workdir) of a finished 1-epoch (8-step) run with checkpoints at steps 5 and 8 (one
  per test module; tests that change it use `run_copy`)."""
  from robust_jax.training import loop as train  # pylint: disable=g-import-not-at-top
  from robust_jax.training import checkpointing
  config = helpers.tiny_config(tiny_npz, num_epochs=1)
  path = str(tmp_path_factory.mktemp('finished') / 'run')
  train.train_and_evaluate(config, path, devices=eight_devices[:1])
  assert checkpointing.saved_steps(os.path.join(path, 'checkpoints')) == [5, 8]
  return config, path


@pytest.fixture
def run_copy(finished_run, tmp_path):
  """(config, workdir) of a copy of `finished_run` that the test may change."""
  config, path = finished_run
  copy = str(tmp_path / 'run')
  shutil.copytree(path, copy)
  return config.copy_and_resolve_references(), copy


@pytest.fixture(scope='session')
def eight_devices():
  devices = jax.devices()
  if len(devices) < 8:
    pytest.skip('needs 8 (simulated) devices')
  return devices


def pytest_configure(config):
  config.addinivalue_line('markers',
                          'long: one of the longest tests (25 s or more on 2 cores); started first')
  np.set_printoptions(precision=4)


def pytest_collection_modifyitems(config, items):
  """Tests marked `long` run first: with `-n 2`, a long test left at the end of the order keeps
  one worker busy after the other has finished (the accelerator check, last in file order, did so
  for 2-3 minutes)."""
  del config
  items.sort(key=lambda item: item.get_closest_marker('long') is None)  # stable: order kept
