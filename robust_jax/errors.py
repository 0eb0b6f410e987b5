"""The failures a user can cause and fix, which the command lines report in one line.

Every expected failure (a bad config value, a dataset that is missing or malformed, a workdir held
by another run, a damaged checkpoint, a loss that became NaN) raises a subclass of `UserError`
whose message is one line naming the cause and the remedy. `python -m robust_jax.main` and
`python -m robust_jax.evaluate` print it as `error: MESSAGE` and exit with status 1
(`robust_jax.cli.run`); set `ROBUST_JAX_TRACEBACK=1` to see the full traceback for a bug report.
Anything else that escapes is a bug in robust_jax and keeps its traceback.
"""
from __future__ import annotations

__all__ = ['UserError']


class UserError(Exception):
  """An expected failure with a one-line message that says what to do."""
