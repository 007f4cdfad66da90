"""Train steps on 8 simulated CPU devices match a single device."""

import jax
import numpy as np
import pytest

from sorax import config as config_lib
from sorax.parallel import mesh as mesh_lib
from sorax.train import state as state_lib
from sorax.train.step import make_train_step
from sorax.train.trainer import step_config
from tests.test_config import WORLD

TINY = ["--config.codec.name=space_to_depth",  # pixel latents: no trained weights
        "--config.model.width=64", "--config.model.depth=2", "--config.model.heads=4",
        "--config.model.text_width=32", "--config.model.text_depth=1", "--config.data.batch_size=8",
        "--config.data.text_len=12", "--config.optim.warmup_steps=1",
        "--config.diffusion.text_dropout=0.2"]


def _batch(seed):
  rng = np.random.default_rng(seed)
  return {"video": rng.integers(0, 256, (8, 2, 16, 16, 3), dtype=np.uint8),
          "ids": rng.integers(3, 500, (8, 12)).astype(np.int32),
          "mask": np.arange(12)[None].repeat(8, 0) < rng.integers(2, 12, (8, 1))}


def _run(shape, devices, steps=2):
  cfg = config_lib.load_config(f"{WORLD}:demo", TINY)
  mesh = mesh_lib.make_mesh(shape, devices)
  rules = mesh_lib.rules_from_config(cfg.mesh.rules)
  tx = state_lib.make_optimizer(cfg)
  with mesh_lib.activate(mesh, rules):
    graphdef, state, shardings = state_lib.init_state(cfg, 512, mesh, rules, tx)
    codec = state_lib.make_codec_from(cfg)
    step = jax.jit(make_train_step(graphdef, tx, codec.encode, step_config(cfg)),
                   in_shardings=(shardings, None), out_shardings=(shardings, None))
    losses = []
    for i in range(steps):
      b = {k: jax.device_put(v, mesh_lib.batch_sharding(mesh, rules, v.ndim))
           for k, v in _batch(i).items()}
      state, m = step(state, b)
      losses.append(float(m["loss"]))
  return losses, jax.device_get(state.params), state


@pytest.fixture(scope="module")
def single():
  return _run({"data": 1}, jax.devices()[:1])


def test_sharded_steps_match_one_device(single):
  """One mesh with every axis split (data 2 x fsdp 2 x tensor 2: one compile covers both kinds of
  parameter sharding) gives the single device's losses and parameters."""
  assert len(jax.devices()) == 8
  losses, params, state = _run({"data": 2, "fsdp": 2, "tensor": 2}, jax.devices())
  np.testing.assert_allclose(losses, single[0], rtol=2e-5)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(single[1])):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
  # The parameters really are split over the mesh: embed over fsdp, heads over tensor.
  wq = state.params["dit"]["blocks"]["attn"]["wq"]
  wq = jax.tree.leaves(wq)[0]
  assert len(wq.sharding.device_set) == 8
  shard = wq.addressable_shards[0].data.shape
  assert shard[1] == wq.shape[1] // 2 and shard[2] == wq.shape[2] // 2, (shard, wq.shape)


def test_mesh_errors():
  with pytest.raises(ValueError, match="unknown mesh axes"):
    mesh_lib.make_mesh({"model": 2})
  with pytest.raises(ValueError, match="needs 16 devices"):
    mesh_lib.make_mesh({"data": 16})
  with pytest.raises(ValueError, match="at most one mesh axis may be -1"):
    mesh_lib.make_mesh({"data": -1, "fsdp": -1})
  assert mesh_lib.make_mesh({"data": -1, "tensor": 2}).shape["data"] == 4
  with pytest.raises(ValueError, match="unknown mesh axes"):
    mesh_lib.rules_from_config([["embed", "model"]])


def test_topology_aware_mesh_and_dcn_checks():
  m = mesh_lib.make_mesh({"data": 2, "fsdp": 4}, dcn_shape={"data": 1})
  assert dict(m.shape) == {"data": 2, "fsdp": 4, "tensor": 1, "sequence": 1}
  assert sorted(d.id for d in m.devices.flat) == list(range(8))  # every device once
  assert all(t == jax.sharding.AxisType.Auto for t in m.axis_types)
  with pytest.raises(ValueError, match="unknown mesh.dcn_shape axes"):
    mesh_lib.make_mesh({"data": 2}, dcn_shape={"slices": 2})
  with pytest.raises(ValueError, match="does not divide"):
    mesh_lib.make_mesh({"data": 2, "fsdp": 4}, dcn_shape={"fsdp": 3})
  with pytest.raises(ValueError, match="spans 2 slices"):  # one process, one slice here
    mesh_lib.make_mesh({"data": 2, "fsdp": 4}, dcn_shape={"data": 2})
