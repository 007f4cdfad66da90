"""Resharding: a checkpoint saved on one mesh restores onto another (8 simulated devices,
fsdp=8 -> data=2 x fsdp=4 -> 1 device), parameters and optimizer state, and the next step
matches the run that never moved."""

import shutil

import jax
import numpy as np
import pytest

from sorax.train.trainer import Trainer
from tests.test_train import tiny

MESHES = {"fsdp8": ["--config.mesh.shape.data=1", "--config.mesh.shape.fsdp=8"],
          "data2_fsdp4": ["--config.mesh.shape.data=2", "--config.mesh.shape.fsdp=4"],
          "one": ["--config.mesh.shape.data=1"]}


def _cfg(mesh):
  return tiny("--config.data.batch_size=8", "--config.train.steps=3", *MESHES[mesh])


def _host(tree):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_checkpoint_moves_between_meshes_and_the_next_step_matches(tmp_path):
  assert len(jax.devices()) == 8
  src = Trainer(_cfg("fsdp8"), tmp_path / "fsdp8")
  for _ in range(2):
    src.train_step(next(src.data))
  src.save()
  src.ckpt.wait()
  batch = next(src.data)  # the batch of step 3, the same for every mesh
  saved_params, saved_opt = _host(src.state.params), _host(src.state.opt_state)
  wq = src.state.params["dit"]["blocks"]["attn"]["wq"]
  assert len(wq.sharding.device_set) == 8
  want = float(jax.device_get(src.train_step(batch)["loss"]))
  want_params = _host(src.state.params)
  src.close()

  for mesh, devices in (("data2_fsdp4", jax.devices()), ("one", jax.devices()[:1])):
    shutil.copytree(tmp_path / "fsdp8" / "checkpoints", tmp_path / mesh / "checkpoints")
    tr = Trainer(_cfg(mesh), tmp_path / mesh, devices=devices)
    assert tr.step == 2
    assert dict(tr.mesh.shape)["fsdp"] == (4 if mesh == "data2_fsdp4" else 1)
    w = tr.state.params["dit"]["blocks"]["attn"]["wq"]
    assert len(w.sharding.device_set) == len(devices)  # on the new mesh
    for a, b in zip(_host(tr.state.params) + _host(tr.state.opt_state), saved_params + saved_opt):
      np.testing.assert_array_equal(a, b)  # parameters and Adam moments, exactly
    got = float(jax.device_get(tr.train_step(batch)["loss"]))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(_host(tr.state.params), want_params):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    tr.close()
