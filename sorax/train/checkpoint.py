"""Orbax checkpoints: async, atomic (Orbax writes to a temp dir and renames), keep-N, and
resumable — a checkpoint holds the train state, the data iterator's position and the config.

Layout: <workdir>/checkpoints/<step>/{state, data, meta}.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
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


def restore_ema(path: str | pathlib.Path, make: Callable[[Any, dict], tuple[Any, Callable]],
                step: int | None = None):
  """Restores a training workdir's EMA weights (what sampling and encoding use) on one device.

  `make(cfg, meta) -> (model_cfg, model_fn)` builds the model the checkpoint holds from its saved
  config. The whole train state is restored (then all but the EMA dropped): simple, but it costs
  three times the weights' memory while loading.

  -> (step, graphdef, ema params, meta, model_cfg)
  """
  import jax.numpy as jnp
  import ml_collections
  from flax import nnx

  from sorax.train import state as state_lib

  ckdir = checkpoint_dir(path)
  if not ckdir.is_dir():
    raise CheckpointError(f"checkpoint {path} not found: no folder {ckdir}")
  ckpt = Checkpointer(ckdir.parent, create=False, async_save=False)
  try:
    if ckpt.latest_step() is None:
      raise CheckpointError(f"checkpoint {path} holds no saved step")
    meta = ckpt.read_meta(step)
    cfg = ml_collections.ConfigDict(meta["config"])
    cfg.lock()
    model_cfg, model_fn = make(cfg, meta)
    tx = state_lib.make_optimizer(cfg)
    graphdef, abstract_params = nnx.split(nnx.eval_shape(model_fn))
    dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def abstract_state():
      params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), abstract_params)
      return state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                  opt_state=tx.init(params), ema=params,
                                  rng=jax.random.PRNGKey(0))

    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev),
                          jax.eval_shape(abstract_state))
    ckstep, state, _ = ckpt.restore(target, None, step)
  finally:
    ckpt.close()
  return ckstep, graphdef, state.ema, meta, model_cfg
