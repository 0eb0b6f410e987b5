"""Orbax checkpoints of the train state in `WORKDIR/checkpoints/<step>`; the newest is restored."""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

__all__ = ['Checkpointer', 'saved_steps']


def saved_steps(directory: str) -> list[int]:
  """The steps of the finished checkpoints in `directory`, ascending; reads only, writes nothing."""
  return sorted(ocp.utils.checkpoint_steps(directory)) if os.path.isdir(directory) else []


class Checkpointer:
  """Saves every N steps and at the end; `restore_latest` resumes an interrupted run.

  Only the newest `max_to_keep` checkpoints are kept, plus those at `keep_steps`, which are never
  deleted.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, keep_steps: tuple[int, ...] = ()):
    self._directory = os.path.abspath(directory)
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(max_to_keep), checkpoint_managers.CustomSteps(keep_steps)])
    self._manager = ocp.CheckpointManager(
        self._directory,
        options=ocp.CheckpointManagerOptions(preservation_policy=policy, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore_latest(self, template):
    """The newest checkpoint restored with `template`'s structure, shapes and shardings, or None."""
    return self.restore(template)

  def restore(self, template, step: int | None = None):
    """Checkpoint `step` (default: the newest) restored like `template`, or None if there is none.

    template: a pytree of arrays or `jax.ShapeDtypeStruct`s with shardings.
    Raises FileNotFoundError when `step` is given and has no checkpoint.
    """
    if step is not None and step not in self._manager.all_steps():
      available = ', '.join(map(str, sorted(self._manager.all_steps()))) or 'none'
      raise FileNotFoundError(f'no checkpoint for step {step} in {self._directory}; '
                              f'available steps: {available}')
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
