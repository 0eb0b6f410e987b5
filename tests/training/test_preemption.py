"""Preemption: SIGTERM/SIGINT checkpoint at the next step and exit cleanly, wall-clock checkpoints,
and a real `robust_jax.main` process stopped by SIGTERM and rerun ends bit-identical to an
uninterrupted one."""
import gc
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from robust_jax.training import checkpointing, loop as train, metric_writer, preemption
from tests import helpers
from tests.helpers import REPO_ROOT

REPO = REPO_ROOT
CONFIG_FILE = '''
from tests import helpers


def get_config(arg=None):
  del arg
  return helpers.tiny_config({npz!r}, **{train!r})
'''


def write_config_file(path, npz, **train_overrides) -> str:
  """A config file for `robust_jax.main`: `helpers.tiny_config(npz, **train_overrides)`."""
  with open(path, 'w') as f:
    f.write(CONFIG_FILE.format(npz=npz, train=train_overrides))
  return str(path)


def subprocess_env(**extra) -> dict:
  """The environment of this test process without its 8 simulated devices (1 CPU device)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', **extra)
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '').replace(
      '--xla_force_host_platform_device_count=8', '').strip()
  return env


def train_command(config_file, workdir, *flags) -> list[str]:
  return [sys.executable, '-m', 'robust_jax.main', f'--config={config_file}',
          f'--workdir={workdir}', *flags]


def final_params(workdir):
  """The newest checkpoint's parameters on this process's first device, whatever saved them."""
  directory = os.path.join(workdir, 'checkpoints')
  path = os.path.join(directory, str(checkpointing.saved_steps(directory)[-1]), 'default')
  checkpointer = ocp.StandardCheckpointer()
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                        checkpointer.metadata(path).item_metadata)
  return checkpointer.restore(path, target)['params']


def logged_steps(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [record['step'] for record in map(json.loads, f) if 'train/loss' in record]


def _read(path) -> str:
  with open(path) as f:
    return f.read()


def _lines(path) -> int:
  """Complete lines in `path` so far (0 when it does not exist yet)."""
  return _read(path).count('\n') if os.path.exists(path) else 0


def test_stop_signals_record_the_first_signal_and_restore_handlers():
  original_sigterm = signal.getsignal(signal.SIGTERM)
  original_sigint = signal.getsignal(signal.SIGINT)
  previous = lambda signum, frame: None
  signal.signal(signal.SIGTERM, previous)
  try:
    with preemption.StopSignals() as signals:
      os.kill(os.getpid(), signal.SIGTERM)
      os.kill(os.getpid(), signal.SIGTERM)
      assert signals.received == 'SIGTERM'  # the process lives on
      # A second Ctrl-C does not wait for the step. The garbage collector stays off meanwhile:
      # a handler that runs inside a gc callback (hypothesis installs one) has its exception
      # swallowed as "unraisable" (a CI log once showed a KeyboardInterrupt raised there).
      gc.disable()
      try:
        with pytest.raises(KeyboardInterrupt):
          os.kill(os.getpid(), signal.SIGINT)
      finally:
        gc.enable()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert signal.getsignal(signal.SIGINT) is original_sigint
  finally:
    signal.signal(signal.SIGTERM, original_sigterm)
  assert preemption.any_process([True, False]) == (True, False)  # one process: its own flags


def test_signal_and_wall_clock_checkpoint_in_process(tiny_npz, tmp_path, eight_devices,
                                                     monkeypatch):
  """SIGTERM during step 3's logging stops after step 4 with a checkpoint; a wall-clock interval
  shorter than a step checkpoints after every step although the step interval is 1000."""
  config = helpers.tiny_config(tiny_npz, log_every_steps=1, checkpoint_every_steps=1000,
                               checkpoint_every_minutes=1e-9)
  saved, write = [], metric_writer.MetricWriter.write

  def write_then_signal(self, step, metrics, prefix='train'):
    write(self, step, metrics, prefix)
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  def recording_save(self, step, state, save=checkpointing.Checkpointer.save):
    saved.append(step)
    save(self, step, state)

  monkeypatch.setattr(metric_writer.MetricWriter, 'write', write_then_signal)
  monkeypatch.setattr(checkpointing.Checkpointer, 'save', recording_save)
  before = signal.getsignal(signal.SIGTERM)
  stopped = train.train_and_evaluate(config, str(tmp_path), devices=eight_devices[:1])
  assert stopped == {'stopped_at_step': 4, 'signal': 'SIGTERM'}
  assert signal.getsignal(signal.SIGTERM) is before
  assert saved == [1, 2, 3, 4]
  assert checkpointing.saved_steps(str(tmp_path / 'checkpoints')) == [3, 4]
  assert logged_steps(str(tmp_path)) == [1, 2, 3, 4]


@pytest.mark.long
def test_sigterm_then_rerun_equals_an_uninterrupted_run(tiny_npz, tmp_path):
  """Two `robust_jax.main` processes run at once; one gets SIGTERM after a few logged steps, saves
  and exits with code 0, and its rerun ends with the uninterrupted run's exact parameters."""
  num_steps = 200
  config_file = write_config_file(
      tmp_path / 'config.py', tiny_npz, num_steps=num_steps, log_every_steps=1,
      checkpoint_every_steps=1000, checkpoint_every_minutes=0.0, eval_every_epochs=1000)
  whole, interrupted = str(tmp_path / 'whole'), str(tmp_path / 'interrupted')
  env = subprocess_env(JAX_COMPILATION_CACHE_DIR=str(tmp_path / 'compiled'),  # rerun: no compiling
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')

  def run(workdir):  # output to a file: an unread pipe could fill up and block the process
    with open(f'{workdir}.log', 'w') as log:
      return subprocess.Popen(train_command(config_file, workdir), cwd=REPO, env=env, stdout=log,
                              stderr=subprocess.STDOUT)

  whole_process, process = run(whole), run(interrupted)
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline and process.poll() is None and _lines(
      f'{interrupted}/metrics.jsonl') < 3:
    time.sleep(0.02)
  process.send_signal(signal.SIGTERM)
  process.wait(timeout=120)
  output = _read(f'{interrupted}.log')
  assert process.returncode == 0, output
  stopped_at = checkpointing.saved_steps(os.path.join(interrupted, 'checkpoints'))
  assert len(stopped_at) == 1 and 3 <= stopped_at[0] < num_steps, output
  assert logged_steps(interrupted)[-1] == stopped_at[0]

  resumed = subprocess.run(train_command(config_file, interrupted), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert whole_process.wait(timeout=120) == 0, _read(f'{whole}.log')
  assert logged_steps(interrupted) == list(range(1, num_steps + 1))  # each step logged once
  jax.tree.map(np.testing.assert_array_equal, final_params(whole), final_params(interrupted))
  with open(f'{whole}/results.json') as f, open(f'{interrupted}/results.json') as g:
    assert helpers.without_timings(json.load(f)) == helpers.without_timings(json.load(g))
