"""Orbax checkpoints of the train state in `WORKDIR/checkpoints/<step>`, checked before any is used.

Saving: orbax writes each step into `<step>.orbax-checkpoint-tmp` in the background and renames it
to `<step>` once every process has written its part. Just before the rename (orbax's
`post_finalization_callback`, which only process 0 runs, after the other processes are done) the
size and sha256 of every file of the step go into `<step>/robust_jax_sha256.json`: the checksums
appear atomically with the checkpoint, and saving stays asynchronous. Not covered: the top-level
`_CHECKPOINT_METADATA` (timestamps, which orbax rewrites after the rename) and
`commit_success.txt` (written after it). A save that fails (a full disk, a lost mount) raises a
one-line CheckpointError at the next `save` or at `close`, once orbax's writers have stopped, and
removes the unfinished folder; those left by a killed run are removed when a writing Checkpointer
starts.

Before a checkpoint is used, `robust_jax.training.checkpoint_integrity` checks it: its files
against those checksums, the step and run id they record, the shapes of its arrays, and that
every restored float is finite (that module's docstring says what catches what).

A damaged checkpoint raises `CheckpointError` naming the step and the damage. `restore_latest`
(training resumes) skips damaged checkpoints, newest first, and moves each skipped one to
`<checkpoints>.damaged/<step>` (replacing an earlier damaged copy of that step), where it is kept
for inspection and never restored: left in place, orbax would count it as the newest step and
silently not save any step up to it. When none is intact it raises CheckpointError saying to move
the checkpoints folder away to start over. `restore` of one step (evaluation: the newest by
default) refuses a damaged checkpoint and moves nothing.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from robust_jax import errors
from robust_jax.training import checkpoint_integrity as integrity

__all__ = ['CheckpointError', 'Checkpointer', 'StepNotFoundError', 'saved_steps']

_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax's atomicity_types.TMP_DIR_SUFFIX


class CheckpointError(errors.UserError):
  """A checkpoint is damaged or of another model, none is intact, or one could not be written."""


class StepNotFoundError(CheckpointError, FileNotFoundError):
  """No checkpoint for the step asked for."""


def saved_steps(directory: str) -> list[int]:
  """The steps of the finished checkpoints in `directory`, ascending; reads only, writes nothing.

  Raises NotADirectoryError when `directory` is a file (orbax would fail to save into it only in
  its background threads, after every step of the run was trained).
  """
  if os.path.exists(directory) and not os.path.isdir(directory):
    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), directory)
  return sorted(ocp.utils.checkpoint_steps(directory)) if os.path.isdir(directory) else []


# Room to keep free beyond the state's bytes, for orbax's metadata and the checksum file. The data
# take at most the state's bytes: orbax compresses (a 4.0 MB float32 array of normal noise took
# 3.7 MB on disk in all, measured with orbax-checkpoint 0.12.8).
_SAVE_OVERHEAD_BYTES = 1 << 20


def _require_free_space(directory: str, step: int, state) -> None:
  """Raises CheckpointError, before anything is written, when the file system of `directory` has
  less free space than `state`'s bytes plus `_SAVE_OVERHEAD_BYTES`.

  orbax writes in background threads; a disk that fills up there fails from inside those threads,
  and tensorstore then prints tracebacks of its own on stderr while the error makes its way back.
  Checking first turns the usual case, a disk already too full, into one line. A disk that another
  program fills during the save still fails (`_cleaning_up_failed_save`). With several processes
  the smallest free space of all decides, on every process.
  """
  needed = sum(leaf.nbytes for leaf in jax.tree.leaves(state) if hasattr(leaf, 'nbytes'))
  needed += _SAVE_OVERHEAD_BYTES
  free = shutil.disk_usage(directory).free
  if jax.process_count() > 1:  # every process decides alike, or some would wait in orbax's save
    # in MiB, as int32 (JAX's default integer: int64 would wrap above 2 GiB)
    free_mib = multihost_utils.process_allgather(np.int32(min(free >> 20, 2**31 - 1)))
    free = int(np.min(free_mib)) << 20
  if free < needed:
    raise CheckpointError(
        f'not enough free space for the checkpoint at step {step} in {directory}: it needs about '
        f'{_megabytes(needed)}, {_megabytes(free)} are free; free some space (or use another '
        '--workdir) and rerun the same command to resume from the newest checkpoint')


def _megabytes(size: int) -> str:
  return f'{size / 1e6:.1f} MB'


class Checkpointer:
  """Saves every N steps and at the end; `restore_latest` resumes an interrupted run.

  Only the newest `max_to_keep` checkpoints are kept, plus those at `keep_steps`, which are never
  deleted. `read_only=True` (evaluation) never writes, moves or deletes anything in `directory`.

  run_id: the workdir's run id (`robust_jax.training.workdir.run_id`), recorded with every checkpoint saved
    and required of every checkpoint restored, whose checksum file must then exist; None for a
    workdir from before run ids, whose checkpoints may lack checksums (restored with a notice).
  Raises NotADirectoryError when `directory` is a file.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, keep_steps: tuple[int, ...] = (),
               read_only: bool = False, run_id: str | None = None):
    self._directory = os.path.abspath(directory)
    saved_steps(self._directory)  # a file there fails here, not in orbax's threads
    self._run_id = run_id
    self._saving: int | None = None  # the step orbax is writing in the background
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(max_to_keep), checkpoint_managers.CustomSteps(keep_steps)])
    # orbax's own read_only option warns on stderr about each option it resets; a manager that is
    # never asked to save writes nothing either.
    options = ocp.CheckpointManagerOptions(create=False) if read_only else (
        ocp.CheckpointManagerOptions(
            preservation_policy=policy, create=True,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._write_checksums)))
    if not read_only:
      _remove_unfinished(self._directory)
    self._manager = ocp.CheckpointManager(self._directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, template):
    """(newest intact checkpoint restored like `template`, or None when there is no checkpoint;
    one line per damaged checkpoint skipped, newest first).

    A skipped checkpoint is moved to `<directory>.damaged/<step>`, and its line says so:
    'checkpoint at step 8 is damaged (sha256 mismatch in default/d/0a1b), moved to
    W/checkpoints.damaged/8'. Raises CheckpointError when there are checkpoints but none is intact
    (moving nothing).
    """
    damaged = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state = self._restore_intact(template, step)
      except integrity.Damaged as damage:
        damaged.append((step, damage))
        continue
      moved_to = integrity.set_aside(self._directory, [s for s, _ in damaged])
      self._manager.reload()  # orbax neither counts nor keeps the checkpoints moved away
      return state, [f'checkpoint at step {s} is damaged ({damage}), moved to {target}'
                     for (s, damage), target in zip(damaged, moved_to)]
    if damaged:
      raise CheckpointError(
          f'no intact checkpoint in {self._directory}: '
          f'{"; ".join(f"step {s}: {damage}" for s, damage in damaged)}; to train from scratch, '
          f'move the folder away (mv {self._directory} {self._directory}.old) and rerun')
    return None, []

  def restore(self, template, step: int | None = None):
    """Checkpoint `step` (default: the newest) restored like `template`, or None if there is none.

    template: a pytree of arrays or `jax.ShapeDtypeStruct`s with shardings.
    Raises StepNotFoundError when `step` is given and has no checkpoint, and CheckpointError
    (never an older checkpoint instead) when it is damaged or of other shapes than `template`.
    """
    if step is not None and step not in self._manager.all_steps():
      available = ', '.join(map(str, sorted(self._manager.all_steps()))) or 'none'
      raise StepNotFoundError(f'no checkpoint for step {step} in {self._directory}; '
                              f'available steps: {available}')
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    try:
      return self._restore_intact(template, step)
    except integrity.Damaged as damage:
      others = ', '.join(str(s) for s in sorted(self._manager.all_steps()) if s != step) or 'none'
      raise CheckpointError(
          f'checkpoint at step {step} in {self._directory} is damaged ({damage}); pick another '
          f'step (the others: {others})') from damage.__cause__

  def save(self, step: int, state) -> None:
    """Starts writing `state` as checkpoint `step` (finished in the background).

    Raises CheckpointError when the previous save failed, or when this one cannot start, e.g.
    because the disk has less free space than the state takes (`_require_free_space`).
    """
    self.finish_saving()
    _require_free_space(self._directory, step, state)
    self._saving = step
    with _cleaning_up_failed_save(self._directory, step):
      saved = self._manager.save(step, args=ocp.args.StandardSave(state))
    if not saved:
      raise CheckpointError(f'orbax did not save step {step} in {self._directory}, which holds a '
                            f'checkpoint at or after it (step {self._manager.latest_step()}); move '
                            'that away and rerun')

  def close(self) -> None:
    """Waits for the last save; raises CheckpointError when it failed."""
    self.finish_saving()
    self._manager.close()

  def finish_saving(self) -> None:
    """Waits for the save in flight, if any; raises CheckpointError when it failed."""
    if self._saving is None:
      return
    try:
      with _cleaning_up_failed_save(self._directory, self._saving):
        self._manager.wait_until_finished()
    finally:
      self._saving = None

  def _write_checksums(self) -> None:
    """orbax's post-finalization callback (process 0): records the finished step's checksums."""
    integrity.write_checksums(os.path.join(self._directory, f'{self._saving}{_TMP_SUFFIX}'),
                              self._saving, self._run_id)

  def _restore_intact(self, template, step: int):
    """Checkpoint `step` restored like `template`; raises integrity.Damaged saying what is wrong.

    A checkpoint of other shapes than `template` raises CheckpointError (not damage). orbax's
    errors count as damage only for a checkpoint without checksums: where every file matches its
    checksum, an orbax error propagates as it is. A checkpoint without checksums in a workdir
    from before run ids is restored with a printed notice.
    """
    folder = os.path.join(self._directory, str(step))
    verified = integrity.verify_checksums(folder, step, self._run_id)
    if not verified and jax.process_index() == 0:
      print(f'checkpoint at step {step} has no checksums (written before robust_jax recorded '
            'them): not verified', flush=True)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
      mismatch = integrity.shape_mismatch(folder, abstract)
      if mismatch:
        raise CheckpointError(
            f'checkpoint at step {step} in {self._directory} belongs to another model or config: '
            f'{mismatch}; was config.json edited, or the step folder copied from another run? '
            'Move it away, or restore the config that trained it')
      state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # tensorstore raises bare Exceptions
      if verified:
        raise
      raise integrity.Damaged(f'orbax cannot read it: {_first_line(e)}') from e
    integrity.check_restored(state, step)
    return state


@contextlib.contextmanager
def _cleaning_up_failed_save(directory: str, step: int):
  """An I/O error while saving `step` removes the unfinished folders (process 0) and becomes a
  one-line CheckpointError."""
  try:
    yield
  except (OSError, ValueError) as error:
    if not (isinstance(error, OSError) or 'os_error_code' in str(error)):
      raise  # tensorstore reports I/O errors as ValueError with an os_error_code; others are bugs
    _join_orbax_threads()  # orbax reports the first failure while its other writers go on
    _remove_unfinished(directory)
    raise CheckpointError(
        f'could not write the checkpoint at step {step} in {directory}: {_reason(error)}; the '
        'unfinished checkpoint was removed; free some space (or fix the folder) and rerun the '
        'same command to resume from the newest checkpoint') from error


def _join_orbax_threads(timeout: float = 60.0) -> None:
  """Waits (at most `timeout` seconds in all) for orbax's background threads to end."""
  deadline = time.monotonic() + timeout
  for thread in threading.enumerate():
    if type(thread).__module__.startswith('orbax.') and thread is not threading.current_thread():
      thread.join(max(0.0, deadline - time.monotonic()))


def _remove_unfinished(directory: str) -> None:
  """Removes the folders of unfinished saves (`<step>.orbax-checkpoint-tmp*`; process 0)."""
  if jax.process_index() == 0:
    for folder in glob.glob(os.path.join(glob.escape(directory), f'*{_TMP_SUFFIX}*')):
      shutil.rmtree(folder, ignore_errors=True)


def _reason(error: BaseException) -> str:
  """Why a write failed: the system's reason ('No space left on device') where the error gives an
  errno (tensorstore's messages end in "[os_error_code='28']"), else its first line."""
  if isinstance(error, OSError) and error.errno:
    return f'{os.strerror(error.errno)}: {error.filename}' if error.filename else error.strerror
  code = re.search(r"os_error_code='?(\d+)", str(error))
  return os.strerror(int(code.group(1))) if code else _first_line(error)


def _first_line(error: BaseException, limit: int = 200) -> str:
  """'ValueError: NOT_FOUND: ...': the type and the first line of `error`, at most `limit` chars."""
  lines = str(error).strip().splitlines()
  text = f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__
  return text if len(text) <= limit else text[:limit - 3] + '...'

