"""Orbax checkpoints of the train state in `WORKDIR/checkpoints/<step>`; the newest is restored."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves every N steps and at the end; `restore_latest` resumes an interrupted run."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, template):
    """The newest checkpoint restored with `template`'s structure, shapes and shardings, or None."""
    return self.restore(template)

  def restore(self, template, step: int | None = None):
    """Checkpoint `step` (default: the newest) restored like `template`, or None if there is none."""
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def save(self, step: int, state) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
