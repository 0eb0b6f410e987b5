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

Restoring checks a checkpoint three ways: its files against the recorded checksums, orbax's own
errors, and that every restored float (parameters and optimizer state) is finite. What catches
what, measured on the train state of `tests/helpers.tiny_config` (orbax 0.12.8, OCDBT format; "-":
restored without complaint, "n/r": not reached):

| damage to the step folder                            | sha256 file | orbax error | finite check |
|------------------------------------------------------|-------------|-------------|--------------|
| 4 KiB of the largest file (array data) overwritten   | yes         | -           | sometimes    |
| the largest file truncated, or deleted               | yes         | yes         | n/r          |
| `default/manifest.ocdbt` deleted or truncated        | yes         | yes         | n/r          |
| `default/_METADATA` deleted or truncated             | yes         | yes         | n/r          |
| `default/ocdbt.process_0/manifest.ocdbt` del./trunc. | yes         | -           | -            |
| `default/_sharding` or `array_metadatas/` deleted    | yes         | -           | -            |
| `_CHECKPOINT_METADATA` deleted or truncated          | not covered | -           | -            |
| `robust_jax_sha256.json` truncated                   | yes         | -           | -            |
| the step folder emptied                              | yes         | yes         | n/r          |

Overwritten bytes decode to garbage floats (3e38, NaN) that orbax does not notice; the finite check
sees them only when a NaN or inf results (here: with random bytes, not with 0xff bytes). Restoring
without `_CHECKPOINT_METADATA` gives the same state. An unfinished `<step>.orbax-checkpoint-tmp`
folder is never listed as a step.

The checksum file also records the step and the workdir's run id (`robust_jax.training.workdir.run_id`),
and the files it lists must be all the step's files (less those not covered): a step folder
copied or renamed, a checksum file emptied or another run's step folder dropped in counts as
damage, and so does a restored `state.step` other than the folder's step. Once a workdir has a run
id, a missing checksum file is damage too. A checkpoint of a workdir from before run ids without
`robust_jax_sha256.json` (written before checksums were recorded) still restores, with the notice
`checkpoint at step N has no checksums (written before robust_jax recorded them): not verified`,
checked by orbax's errors and the finite check only. A checkpoint whose arrays have other shapes
than the template (another model's step folder, a hand-edited config.json) raises CheckpointError
naming the array and both shapes, from orbax's metadata, before any array is read. Where every
file matches its checksum, any other orbax error is not called damage: it propagates unchanged.

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
import hashlib
import json
import os
import re
import shutil
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath  # orbax's paths
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from robust_jax import errors

__all__ = ['CHECKSUM_FILE', 'CheckpointError', 'Checkpointer', 'StepNotFoundError', 'saved_steps']

CHECKSUM_FILE = 'robust_jax_sha256.json'
_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax's atomicity_types.TMP_DIR_SUFFIX
_REWRITTEN_AFTER_RENAME = '_CHECKPOINT_METADATA'  # orbax's step metadata, not covered
# The files of a step folder that its checksum file does not cover (orbax writes the last after it).
_NOT_COVERED = (CHECKSUM_FILE, _REWRITTEN_AFTER_RENAME, 'commit_success.txt')
_ITEM = 'default'  # the folder of a step in which orbax's CheckpointManager puts the state


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
      except _Damaged as damage:
        damaged.append((step, damage))
        continue
      moved_to = self._set_aside([s for s, _ in damaged])
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
    except _Damaged as damage:
      others = ', '.join(str(s) for s in sorted(self._manager.all_steps()) if s != step) or 'none'
      raise CheckpointError(
          f'checkpoint at step {step} in {self._directory} is damaged ({damage}); pick another '
          f'step (the others: {others})') from damage.__cause__

  def save(self, step: int, state) -> None:
    """Starts writing `state` as checkpoint `step` (finished in the background).

    Raises CheckpointError when the previous save failed, or when this one cannot start, e.g.
    because the disk has less free space than the state takes (`_require_free_space`).
    """
    self._finish_saving()
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
    self._finish_saving()
    self._manager.close()

  def _finish_saving(self) -> None:
    if self._saving is None:
      return
    try:
      with _cleaning_up_failed_save(self._directory, self._saving):
        self._manager.wait_until_finished()
    finally:
      self._saving = None

  def _write_checksums(self) -> None:
    """orbax's post-finalization callback (process 0): records the finished step's checksums."""
    folder = os.path.join(self._directory, f'{self._saving}{_TMP_SUFFIX}')
    files = {path: {'bytes': os.path.getsize(os.path.join(folder, path)),
                    'sha256': _sha256(os.path.join(folder, path))}
             for path in _files(folder) if path != _REWRITTEN_AFTER_RENAME}
    partial = os.path.join(folder, CHECKSUM_FILE + '.partial')
    with open(partial, 'w') as f:
      json.dump({'files': files, 'step': self._saving, 'run_id': self._run_id}, f, indent=1,
                sort_keys=True)
    os.replace(partial, os.path.join(folder, CHECKSUM_FILE))

  def _restore_intact(self, template, step: int):
    """Checkpoint `step` restored like `template`; raises _Damaged saying what is wrong.

    A checkpoint of other shapes than `template` raises CheckpointError (not damage). orbax's
    errors count as damage only for a checkpoint without checksums: where every file matches its
    checksum, an orbax error propagates as it is. A checkpoint without checksums in a workdir
    from before run ids is restored with a printed notice.
    """
    folder = os.path.join(self._directory, str(step))
    verified = _verify_checksums(folder, step, self._run_id)
    if not verified and jax.process_index() == 0:
      print(f'checkpoint at step {step} has no checksums (written before robust_jax recorded '
            'them): not verified', flush=True)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
      _require_shapes(folder, abstract, step)
      state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # tensorstore raises bare Exceptions
      if verified:
        raise
      raise _Damaged(f'orbax cannot read it: {_first_line(e)}') from e
    if hasattr(state, 'step') and int(state.step) != step:
      raise _Damaged(_holds_another_step(int(state.step), step))
    bad_leaf = _non_finite_leaf(state)
    if bad_leaf:
      raise _Damaged(f'non-finite values in {bad_leaf}')
    return state

  def _set_aside(self, steps: list[int]) -> list[str]:
    """Moves the damaged checkpoints `steps` to `<directory>.damaged/<step>` (process 0), so that
    orbax neither counts nor keeps them; returns where each went."""
    targets = [os.path.join(f'{self._directory}.damaged', str(step)) for step in steps]
    if jax.process_index() == 0:
      for step, target in zip(steps, targets):
        if os.path.exists(target):
          shutil.rmtree(target)
        os.renames(os.path.join(self._directory, str(step)), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('robust_jax.training.checkpointing.set_aside')
    self._manager.reload()
    return targets


class _Damaged(Exception):
  """What is wrong with one checkpoint (internal: becomes a CheckpointError or a skip note)."""


def _holds_another_step(recorded: int, step: int) -> str:
  return f'it holds the state of step {recorded}, not {step}: a step folder copied or renamed'


def _require_shapes(folder: str, abstract, step: int) -> None:
  """Raises CheckpointError naming the first array whose shape in the checkpoint in `folder`
  differs from `abstract`'s (or that only one of them has), before orbax reads any array: orbax's
  own error names neither the array nor the checkpoint."""
  def shapes(tree):
    return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  stored = shapes(ocp.StandardCheckpointHandler().metadata(epath.Path(folder) / _ITEM))
  wanted = shapes(abstract)
  for name in [*wanted, *sorted(stored.keys() - wanted.keys())]:  # params before optimizer state
    if name not in stored:
      what = f'{name} is not in it'
    elif name not in wanted:
      what = f'it holds {name}, which this config does not have'
    elif stored[name] != wanted[name]:
      what = f'{name} has shape {stored[name]} in it, {wanted[name]} in this config'
    else:
      continue
    raise CheckpointError(
        f'checkpoint at step {step} in {os.path.dirname(folder)} belongs to another model or '
        f'config: {what}; was config.json edited, or the step folder copied from another run? '
        'Move it away, or restore the config that trained it')


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


def _files(folder: str) -> list[str]:
  """Every file under `folder`, as sorted paths relative to it; OSError when it is unreadable."""
  def fail(error):
    raise error
  return sorted(os.path.relpath(os.path.join(root, name), folder)
                for root, _, names in os.walk(folder, onerror=fail) for name in names)


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _verify_checksums(folder: str, step: int, run_id: str | None) -> bool:
  """True when the files of step folder `folder` are those recorded, each of its recorded size and
  sha256, and the record names `step` and `run_id` (where both were recorded); False when none
  were recorded and `run_id` is None (a checkpoint from before checksums); raises _Damaged naming
  the first difference."""
  path = os.path.join(folder, CHECKSUM_FILE)
  if not os.path.exists(path):
    if run_id is not None:  # this workdir's checkpoints all have checksums
      raise _Damaged(f'its {CHECKSUM_FILE} is missing')
    return False
  try:
    with open(path) as f:
      record = json.load(f)
    files = {name: (int(entry['bytes']), str(entry['sha256']))
             for name, entry in record['files'].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    raise _Damaged(f'its {CHECKSUM_FILE} is unreadable') from None
  if not files:
    raise _Damaged(f'its {CHECKSUM_FILE} records no files')
  if record.get('step', step) != step:
    raise _Damaged(_holds_another_step(record['step'], step))
  if run_id is not None and record.get('run_id') != run_id:
    raise _Damaged(f'it belongs to another run: its run id is {record.get("run_id")}, this '
                   f"workdir's is {run_id}")
  unrecorded = sorted(set(_files(folder)) - set(files) - set(_NOT_COVERED))
  if unrecorded:
    raise _Damaged(f'{unrecorded[0]} is not recorded in its {CHECKSUM_FILE}')
  for name, (size, digest) in sorted(files.items()):
    full = os.path.join(folder, name)
    if not os.path.isfile(full):
      raise _Damaged(f'{name} is missing')
    if os.path.getsize(full) != size:
      raise _Damaged(f'{name} has {os.path.getsize(full)} bytes, {size} were written')
    if _sha256(full) != digest:
      raise _Damaged(f'sha256 mismatch in {name}')
  return True


def _non_finite_leaf(tree) -> str | None:
  """The path of the first float leaf of `tree` holding a NaN or inf, or None.

  Reads each process's own shards (every distinct one once), so all processes decide alike for
  replicated arrays without a collective.
  """
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    if not jnp.issubdtype(leaf.dtype, jnp.inexact):
      continue
    shards = ({str(shard.index): shard.data for shard in leaf.addressable_shards}.values()
              if isinstance(leaf, jax.Array) else [leaf])
    if not all(np.isfinite(np.asarray(data)).all() for data in shards):
      return jax.tree_util.keystr(path, simple=True, separator='/')
  return None


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

