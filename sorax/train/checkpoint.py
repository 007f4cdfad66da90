"""Orbax checkpoints: async, atomic (Orbax writes to a temp dir and renames), keep-N, and
resumable — a checkpoint holds the train state, the data iterator's position and the config.

Layout: <workdir>/checkpoints/<step>/{state, data, meta}.
"""

from __future__ import annotations

import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  pass


def checkpoint_dir(path: str | pathlib.Path) -> pathlib.Path:
  """Accepts a workdir or its checkpoints/ folder; returns the checkpoints/ folder."""
  p = pathlib.Path(path)
  return p if p.name == "checkpoints" else p / "checkpoints"


class Checkpointer:
  def __init__(self, workdir: str | pathlib.Path, *, keep: int = 2, async_save: bool = True,
               create: bool = True):
    self.directory = checkpoint_dir(workdir).absolute()
    if not create and not self.directory.is_dir():
      raise CheckpointError(f"no checkpoints found at {self.directory}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, create=create)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iter: Any | None, meta: dict) -> bool:
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state: Any, data_iter: Any | None = None,
              step: int | None = None) -> tuple[int, Any, dict]:
    """Restores onto the shardings of `abstract_state` (a tree of jax.ShapeDtypeStruct with
    .sharding), so a checkpoint moves to a new mesh. -> (step, state, meta)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint to restore in {self.directory}")
    items = dict(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
    if data_iter is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types; name the checkpoint in one message
      raise CheckpointError(f"could not restore checkpoint {self.directory / str(step)}: {e}") from e
    return step, out["state"], out["meta"]

  def read_meta(self, step: int | None = None) -> dict:
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f"no checkpoint in {self.directory}")
    out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    return out["meta"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(state: Any, shardings: Any) -> Any:
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)
