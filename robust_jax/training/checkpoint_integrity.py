"""Whether a checkpoint step folder is intact and this run's, and setting damaged ones aside: its
`robust_jax_sha256.json` manifest (written at save, verified at restore), the shapes of its arrays
and the finite check.

`robust_jax.training.checkpointing` writes the manifest as each save finishes, runs these checks
before it uses a checkpoint and moves the damaged ones that training skips to
`<checkpoints>.damaged/<step>` (`set_aside`).

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
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath  # orbax's paths
from jax.experimental import multihost_utils

__all__ = ['CHECKSUM_FILE', 'Damaged', 'check_restored', 'set_aside', 'shape_mismatch',
           'verify_checksums', 'write_checksums']

CHECKSUM_FILE = 'robust_jax_sha256.json'
_REWRITTEN_AFTER_RENAME = '_CHECKPOINT_METADATA'  # orbax's step metadata, not covered
# The files of a step folder that its checksum file does not cover (orbax writes the last after it).
_NOT_COVERED = (CHECKSUM_FILE, _REWRITTEN_AFTER_RENAME, 'commit_success.txt')
_ITEM = 'default'  # the folder of a step in which orbax's CheckpointManager puts the state


class Damaged(Exception):
  """What is wrong with one checkpoint (internal: `robust_jax.training.checkpointing` turns it into
  a CheckpointError or a skip note)."""


def _holds_another_step(recorded: int, step: int) -> str:
  return f'it holds the state of step {recorded}, not {step}: a step folder copied or renamed'


def write_checksums(folder: str, step: int, run_id: str | None) -> None:
  """Records the size and sha256 of every file of the finished save in `folder` (all but
  `_CHECKPOINT_METADATA`), with `step` and `run_id`, in `folder/robust_jax_sha256.json`."""
  files = {path: {'bytes': os.path.getsize(os.path.join(folder, path)),
                  'sha256': _sha256(os.path.join(folder, path))}
           for path in _files(folder) if path != _REWRITTEN_AFTER_RENAME}
  partial = os.path.join(folder, CHECKSUM_FILE + '.partial')
  with open(partial, 'w') as f:
    json.dump({'files': files, 'step': step, 'run_id': run_id}, f, indent=1, sort_keys=True)
  os.replace(partial, os.path.join(folder, CHECKSUM_FILE))


def shape_mismatch(folder: str, abstract) -> str | None:
  """What differs about the first array whose shape in the checkpoint in `folder` differs from
  `abstract`'s (or that only one of them has), read from orbax's metadata before any array is:
  orbax's own error names neither the array nor the checkpoint. None when all shapes match."""
  def shapes(tree):
    return {jax.tree_util.keystr(path, simple=True, separator='/'): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}
  stored = shapes(ocp.StandardCheckpointHandler().metadata(epath.Path(folder) / _ITEM))
  wanted = shapes(abstract)
  for name in [*wanted, *sorted(stored.keys() - wanted.keys())]:  # params before optimizer state
    if name not in stored:
      return f'{name} is not in it'
    if name not in wanted:
      return f'it holds {name}, which this config does not have'
    if stored[name] != wanted[name]:
      return f'{name} has shape {stored[name]} in it, {wanted[name]} in this config'
  return None


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


def verify_checksums(folder: str, step: int, run_id: str | None) -> bool:
  """True when the files of step folder `folder` are those recorded, each of its recorded size and
  sha256, and the record names `step` and `run_id` (where both were recorded); False when none
  were recorded and `run_id` is None (a checkpoint from before checksums); raises Damaged naming
  the first difference."""
  path = os.path.join(folder, CHECKSUM_FILE)
  if not os.path.exists(path):
    if run_id is not None:  # this workdir's checkpoints all have checksums
      raise Damaged(f'its {CHECKSUM_FILE} is missing')
    return False
  try:
    with open(path) as f:
      record = json.load(f)
    files = {name: (int(entry['bytes']), str(entry['sha256']))
             for name, entry in record['files'].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    raise Damaged(f'its {CHECKSUM_FILE} is unreadable') from None
  if not files:
    raise Damaged(f'its {CHECKSUM_FILE} records no files')
  if record.get('step', step) != step:
    raise Damaged(_holds_another_step(record['step'], step))
  if run_id is not None and record.get('run_id') != run_id:
    raise Damaged(f'it belongs to another run: its run id is {record.get("run_id")}, this '
                  f"workdir's is {run_id}")
  unrecorded = sorted(set(_files(folder)) - set(files) - set(_NOT_COVERED))
  if unrecorded:
    raise Damaged(f'{unrecorded[0]} is not recorded in its {CHECKSUM_FILE}')
  for name, (size, digest) in sorted(files.items()):
    full = os.path.join(folder, name)
    if not os.path.isfile(full):
      raise Damaged(f'{name} is missing')
    if os.path.getsize(full) != size:
      raise Damaged(f'{name} has {os.path.getsize(full)} bytes, {size} were written')
    if _sha256(full) != digest:
      raise Damaged(f'sha256 mismatch in {name}')
  return True


def check_restored(state, step: int) -> None:
  """Raises Damaged when the restored `state` holds another step than `step`, or a NaN or inf in
  a float (parameters and optimizer state); replicas' states hold `step` in every replica."""
  if hasattr(state, 'step'):  # one step, or one per replica (`robust_jax.training.replicas`)
    held = np.unique(np.asarray(jax.device_get(state.step)))
    if np.any(held != step):
      raise Damaged(_holds_another_step(int(held[held != step][0]), step))
  bad_leaf = _non_finite_leaf(state)
  if bad_leaf:
    raise Damaged(f'non-finite values in {bad_leaf}')


def set_aside(directory: str, steps: list[int]) -> list[str]:
  """Moves the damaged checkpoints `steps` of `directory` to `<directory>.damaged/<step>` (process
  0; replacing an earlier damaged copy of the step), where they are kept for inspection and never
  restored; returns where each went."""
  targets = [os.path.join(f'{directory}.damaged', str(step)) for step in steps]
  if jax.process_index() == 0:
    for step, target in zip(steps, targets):
      if os.path.exists(target):
        shutil.rmtree(target)
      os.renames(os.path.join(directory, str(step)), target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('robust_jax.training.checkpointing.set_aside')
  return targets


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
