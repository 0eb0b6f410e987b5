"""How the command lines end: an expected failure is one line on stderr and exit status 1.

    python -m robust_jax.main ...       ->  error: config.train.batch_size=0: must be >= 1
    ROBUST_JAX_TRACEBACK=1 python -m robust_jax.main ...   # the full traceback, for a bug report

Expected failures are `robust_jax.errors.UserError` (bad configs, data, workdirs, checkpoints, a
loss that became NaN) and the `OSError`s of the files a run reads and writes (a full disk, a
read-only or missing folder), which are reported with the path and the system's reason. Anything
else is a bug and keeps its traceback. orbax's own error logs (a failed save logs its traceback from
orbax's writer threads) are dropped unless ROBUST_JAX_TRACEBACK=1: robust_jax reports that failure.
"""
from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable

from robust_jax.errors import UserError

__all__ = ['EXIT_USER_ERROR', 'TRACEBACK_VARIABLE', 'describe_os_error', 'run']

EXIT_USER_ERROR = 1
TRACEBACK_VARIABLE = 'ROBUST_JAX_TRACEBACK'

_REMEDIES = {
    errno.ENOSPC: 'free some space or use another folder; a training rerun resumes from the '
                  'newest intact checkpoint',
    errno.EDQUOT: 'free some space or use another folder',
    errno.EACCES: 'make it writable or use another folder',
    errno.EPERM: 'make it writable or use another folder',
    errno.EROFS: 'the file system is read-only: use another folder',
    errno.ENOTDIR: 'a file stands where a folder is expected: use another path',
    errno.EISDIR: 'a folder stands where a file is expected: use another path',
    errno.EEXIST: 'a file stands where a folder is expected: use another path',
    errno.ENOENT: 'check the path',
}


def describe_os_error(error: OSError) -> str:
  """'No space left on device: /w/checkpoints/5 (free some space ...)' — one line."""
  where = ' -> '.join(str(p) for p in (error.filename, error.filename2) if p is not None)
  reason = error.strerror or str(error)
  remedy = _REMEDIES.get(error.errno)
  return f'{reason}: {where or "(no path given)"}' + (f' ({remedy})' if remedy else '')


def _drop_orbax_errors(record: logging.LogRecord) -> bool:
  """False for orbax's own ERROR logs: a failed save also logs its traceback from orbax's writer
  threads before the failure reaches robust_jax, which reports it in one line (CheckpointError)."""
  return not (record.levelno >= logging.ERROR and f'{os.sep}orbax{os.sep}' in record.pathname)


def run(main: Callable[[], object]) -> object:
  """Calls `main()`; an expected failure exits with `error: ...` and status 1 instead of raising.

  With the environment variable ROBUST_JAX_TRACEBACK=1 the exception is raised as it is.
  """
  if os.environ.get(TRACEBACK_VARIABLE, '') not in ('', '0'):
    return main()
  logging.getLogger('absl').addFilter(_drop_orbax_errors)
  try:
    return main()
  except UserError as error:
    message = str(error)
  except OSError as error:
    message = describe_os_error(error)
  print(f'error: {message}', file=sys.stderr)
  sys.exit(EXIT_USER_ERROR)
