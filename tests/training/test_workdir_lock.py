"""One training per workdir: a second run fails at once naming the holder, the lock goes with its
holder (also on exceptions), a dead holder's lock is taken over, another host's is not."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from robust_jax.training import loop as train, workdir_lock
from tests import helpers
from tests.training.test_preemption import REPO, logged_steps, subprocess_env, train_command, \
    write_config_file


def _lock_path(workdir) -> str:
  return os.path.join(workdir, workdir_lock.LOCK_FILE)


def _holder(workdir) -> dict | None:
  """The holder recorded in the lock file, None while there is none (or it is being written)."""
  try:
    with open(_lock_path(workdir)) as f:
      return json.loads(f.read())
  except (OSError, ValueError):
    return None


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, '-c', ''])
  process.wait()
  return process.pid


def _write_holder(workdir, **holder) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(_lock_path(workdir), 'w') as f:
    json.dump(holder, f)


def logged_steps_so_far(workdir) -> list[int]:
  """The steps logged in `workdir`'s metrics.jsonl so far (complete lines only)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line)['step'] for line in f if line.endswith('\n')]


def test_a_second_training_in_a_busy_workdir_fails_at_once_naming_the_holder(tiny_npz, tmp_path):
  config_file = write_config_file(tmp_path / 'config.py', tiny_npz, num_steps=100000,
                                  log_every_steps=1, checkpoint_every_minutes=0.0)
  workdir = str(tmp_path / 'run')
  with open(tmp_path / 'first.log', 'w') as log:  # a file: an unread pipe could block it
    first = subprocess.Popen(train_command(config_file, workdir), cwd=REPO, env=subprocess_env(),
                             stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 120
    while (_holder(workdir) or {}).get('pid') != first.pid and time.monotonic() < deadline:
      assert first.poll() is None, (tmp_path / 'first.log').read_text()
      time.sleep(0.05)
    since = _holder(workdir)['since']
    second = subprocess.run(train_command(config_file, workdir), cwd=REPO, env=subprocess_env(),
                            capture_output=True, text=True, timeout=120)
    assert first.poll() is None  # the second failed while the first still trains
    assert second.returncode != 0
    assert second.stderr.strip().splitlines()[-1] == (
        f'error: workdir {workdir} is in use by another training run (pid {first.pid} on host '
        f'{socket.gethostname()} since {since}); wait for it to end or stop it, or use another '
        '--workdir')
    # A logged step: the run is inside its loop, where SIGTERM checkpoints and stops (metrics.jsonl
    # alone exists before the signal handlers are installed).
    while not logged_steps_so_far(workdir):
      assert first.poll() is None, (tmp_path / 'first.log').read_text()
      time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=120) == 0, (tmp_path / 'first.log').read_text()
  finally:
    if first.poll() is None:
      first.kill()
  steps = logged_steps(workdir)
  assert steps == list(range(1, len(steps) + 1))  # each step once, in order
  assert not os.path.exists(_lock_path(workdir))


def test_the_lock_is_exclusive_records_its_holder_and_goes_with_it(tmp_path):
  workdir = str(tmp_path)
  with pytest.raises(RuntimeError, match='inside'):
    with workdir_lock.hold(workdir):
      holder = _holder(workdir)
      assert holder['pid'] == os.getpid() and holder['host'] == socket.gethostname()
      with pytest.raises(workdir_lock.WorkdirLockedError,
                         match=f'is in use by another training run \\(pid {os.getpid()} on host '):
        with workdir_lock.hold(workdir):
          pass
      raise RuntimeError('inside')
  assert os.listdir(workdir) == []  # released, also when the block raised
  with workdir_lock.hold(workdir):
    pass


def test_training_in_a_held_workdir_writes_nothing(tiny_npz, tmp_path):
  workdir = str(tmp_path)
  with workdir_lock.hold(workdir):
    with pytest.raises(workdir_lock.WorkdirLockedError):
      train.train_and_evaluate(helpers.tiny_config(tiny_npz), workdir)
    assert os.listdir(workdir) == [workdir_lock.LOCK_FILE]


def test_the_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path, capsys):
  workdir = str(tmp_path)
  pid = _dead_pid()
  _write_holder(workdir, host=socket.gethostname(), pid=pid, since='2025-01-31T12:00:00+00:00')
  with workdir_lock.hold(workdir):
    assert _holder(workdir)['pid'] == os.getpid()
  assert capsys.readouterr().err == (
      f'notice: workdir {workdir}: taking over the lock of a training run that ended without '
      f'releasing it (pid {pid} on host {socket.gethostname()} since 2025-01-31T12:00:00+00:00)\n')
  assert not os.path.exists(_lock_path(workdir))


def test_a_lock_left_on_another_host_is_refused_with_how_to_remove_it(tmp_path):
  workdir = str(tmp_path)
  _write_holder(workdir, host='elsewhere', pid=1, since='2025-01-31T12:00:00+00:00')
  with pytest.raises(workdir_lock.WorkdirLockedError) as error:
    with workdir_lock.hold(workdir):
      pass
  assert str(error.value) == (
      f'workdir {workdir} is locked by a training run on another host (pid 1 on host elsewhere '
      'since 2025-01-31T12:00:00+00:00) whose process cannot be checked from here; if no run '
      f'uses this workdir, delete {_lock_path(workdir)} and rerun')
  assert _holder(workdir)['host'] == 'elsewhere'  # left as it was


def test_without_flock_a_live_holder_on_this_host_blocks_and_a_dead_one_does_not(
    tmp_path, monkeypatch):
  def unsupported(fd, operation):
    raise OSError(38, 'Function not implemented')  # ENOSYS, as some network file systems give

  monkeypatch.setattr(workdir_lock.fcntl, 'flock', unsupported)
  workdir = str(tmp_path)
  _write_holder(workdir, host=socket.gethostname(), pid=os.getppid(), since='then')
  with pytest.raises(workdir_lock.WorkdirLockedError, match=f'pid {os.getppid()} on host'):
    with workdir_lock.hold(workdir):
      pass
  _write_holder(workdir, host=socket.gethostname(), pid=_dead_pid(), since='then')
  with workdir_lock.hold(workdir):
    assert _holder(workdir)['pid'] == os.getpid()
