"""One training per workdir at a time: the lock file `WORKDIR/.lock`.

    with workdir_lock.hold(workdir):   # WorkdirLockedError at once when another run holds it
      ...train...

The lock is `fcntl.flock` on the open lock file, which records its holder as JSON,
{"host": "gpu7", "pid": 1234, "since": "2025-01-31T12:00:00+00:00"}, for the error message. Why
flock rather than creating the file with `O_CREAT|O_EXCL` and checking the recorded pid: the kernel
releases a flock however its holder ends (an exception, a signal, SIGKILL, a crash), so a dead run
never blocks the next one on the same machine, without trusting pids (which are reused, and which
another container's pid namespace does not show) and without guessing whether an empty file is a
run that is just starting or one that died before writing its pid. The holder removes the file when
it ends normally; a file left behind by a run that died is taken over with a one-line notice.

Another host: flock works across hosts only where the network file system supports it (NFS with
lockd does; some mounts lock locally only), so a lock file left by a process on another host is
never taken over: the message says that its holder cannot be checked from here, and to delete
`WORKDIR/.lock` once no run uses the workdir. Where flock is not supported at all (ENOLCK,
EOPNOTSUPP, ENOSYS, EINVAL) the recorded holder is the only guard: a holder on this host counts as
alive while its pid exists.

Multi-host runs: only process 0 takes the lock, and a broadcast tells every process the outcome, so
all fail together. Evaluation only reads a workdir and takes no lock.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from robust_jax.training.workdir_config import WorkdirError

__all__ = ['LOCK_FILE', 'WorkdirLockedError', 'hold']

LOCK_FILE = '.lock'
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class WorkdirLockedError(WorkdirError):
  """Another run holds the workdir (or left its lock behind on another host)."""


@contextlib.contextmanager
def hold(workdir: str):
  """Holds the lock of `workdir` (which must exist) for the duration of the `with` block.

  Raises WorkdirLockedError on every process, having changed nothing, when another run holds it.
  """
  lock, failure = None, None
  if jax.process_index() == 0:
    try:
      lock = _acquire(workdir)
    except Exception as e:  # pylint: disable=broad-except  # re-raised below, after the broadcast
      failure = e
  if jax.process_count() > 1 and not multihost_utils.broadcast_one_to_all(np.int32(not failure)):
    failure = failure or WorkdirLockedError(
        f'workdir {workdir}: process 0 could not take its lock (its error says why)')
  if failure:
    raise failure
  try:
    yield
  finally:
    if lock is not None:
      lock.release()


class _Lock:
  """A held lock: the open, flocked (where supported) lock file that records this process."""

  def __init__(self, path: str, fd: int):
    self._path, self._fd = path, fd

  def release(self) -> None:
    """Removes the file, then unlocks it (a waiting opener then sees it is gone and retries)."""
    try:
      with contextlib.suppress(FileNotFoundError):  # deleted by hand while held
        os.remove(self._path)
    finally:
      os.close(self._fd)


def _acquire(workdir: str) -> _Lock:
  path = os.path.join(workdir, LOCK_FILE)
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      locked = _try_flock(fd)
      if locked and not _same_file(fd, path):  # released (removed) between our open and flock
        os.close(fd)
        continue
      _check_holder(workdir, path, fd, locked)
      _record_self(fd)
    except BaseException:
      os.close(fd)
      raise
    return _Lock(path, fd)


def _try_flock(fd: int) -> bool | None:
  """True when this process now holds the flock, False when another process holds it, None where
  the file system does not support flock."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  except OSError as e:
    if e.errno in _UNSUPPORTED:
      return None
    raise
  return True


def _same_file(fd: int, path: str) -> bool:
  try:
    return os.path.samestat(os.fstat(fd), os.stat(path))
  except FileNotFoundError:
    return False


def _check_holder(workdir: str, path: str, fd: int, locked: bool | None) -> None:
  """Raises WorkdirLockedError unless the lock is free; prints a notice when taking over the lock
  file of a run that died holding it."""
  holder = _read_holder(fd, wait=locked is False)
  who = _describe(holder)
  busy = (f'workdir {workdir} is in use by another training run ({who}); wait for it to end or '
          'stop it, or use another --workdir')
  if locked is False:
    raise WorkdirLockedError(busy)
  if holder is None:
    return
  if holder.get('host', socket.gethostname()) != socket.gethostname():
    raise WorkdirLockedError(
        f'workdir {workdir} is locked by a training run on another host ({who}) whose process '
        f'cannot be checked from here; if no run uses this workdir, delete {path} and rerun')
  if locked is None and _alive(holder.get('pid')):
    raise WorkdirLockedError(busy)
  print(f'notice: workdir {workdir}: taking over the lock of a training run that ended without '
        f'releasing it ({who})', file=sys.stderr)


def _read_holder(fd: int, wait: bool) -> dict | None:
  """The holder recorded in the lock file ({} when unreadable), or None when the file is empty.

  wait: the file is locked, so its holder is about to record itself: give it up to a second.
  """
  for attempt in range(10 if wait else 1):
    if attempt:
      time.sleep(0.1)
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 1 << 16).decode('utf-8', 'replace')
    if text.strip():
      break
  if not text.strip():
    return None
  try:
    holder = json.loads(text)
  except ValueError:
    return {}
  return holder if isinstance(holder, dict) else {}


def _describe(holder: dict | None) -> str:
  """'pid 1234 on host gpu7 since 2025-01-31T12:00:00' (what is known of the holder)."""
  holder = holder or {}
  return (f'pid {holder.get("pid", "?")} on host {holder.get("host", "?")} since '
          f'{holder.get("since", "?")}')


def _alive(pid) -> bool:
  if not isinstance(pid, int) or pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, owned by someone else
    return True
  return True


def _record_self(fd: int) -> None:
  since = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
  text = json.dumps({'host': socket.gethostname(), 'pid': os.getpid(), 'since': since})
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, (text + '\n').encode())
  os.fsync(fd)
