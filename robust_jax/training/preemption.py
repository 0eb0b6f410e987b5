"""Stopping cleanly when asked to: SIGTERM and SIGINT become a request to checkpoint and stop.

A preempted cloud VM or SLURM job gets SIGTERM and a grace period; Ctrl-C sends SIGINT. While a
`StopSignals` context is active either signal only records its name, and the training loop saves a
checkpoint at the next step boundary and returns; a second SIGINT interrupts at once
(KeyboardInterrupt). The previous handlers are restored on exit. Python delivers signals to the main
thread only, so elsewhere the context installs nothing and signals keep their previous behaviour.

Saving is collective over the processes of a multi-host run, so every process must decide to save at
the same step: `any_process` ORs local decisions (a signal that reached one process first, a clock
that ran out first) over all processes.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
  """Context manager; `received` is the name of the first stop signal ('SIGTERM') or None."""

  def __init__(self):
    self.received: str | None = None
    self._previous = {}

  def __enter__(self) -> StopSignals:
    if threading.current_thread() is threading.main_thread():
      self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    del frame
    if self.received is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = self.received or signal.Signals(signum).name


def any_process(flags: Sequence[bool]) -> tuple[bool, ...]:
  """Element-wise OR of `flags` over every process (a collective; free with one process)."""
  if jax.process_count() == 1:
    return tuple(bool(f) for f in flags)
  gathered = multihost_utils.process_allgather(np.asarray(flags, np.int32))
  return tuple(bool(f) for f in np.asarray(gathered).reshape(-1, len(flags)).any(axis=0))


__all__ = ['STOP_SIGNALS', 'StopSignals', 'any_process']
