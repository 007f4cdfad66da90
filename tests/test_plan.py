"""The memory planner (sorax/train/plan.py, `sorax plan`): compiled on abstract shapes."""

import json

import jax
import pytest

from sorax import cli
from sorax import config as config_lib
from sorax.train import plan as plan_lib

TINY = ["--config.model.width=64", "--config.model.depth=2", "--config.model.heads=4",
        "--config.model.text_depth=1", "--config.data.batch_size=8", "--config.data.frames=5",
        "--config.data.text_len=16"]


def _cfg(*extra):
  return config_lib.load_config("experiments/world.py:world32", TINY + list(extra))


def test_candidate_meshes_divide_devices_batch_and_heads():
  meshes = plan_lib.candidate_meshes(8, batch=4, heads=2)
  for m in meshes:
    assert m["data"] * m["fsdp"] * m["tensor"] == 8
    assert 4 % (m["data"] * m["fsdp"]) == 0 and 2 % m["tensor"] == 0
  assert {"data": 4, "fsdp": 1, "tensor": 2} in meshes
  assert {"data": 8, "fsdp": 1, "tensor": 1} not in meshes  # batch 4 does not split 8 ways
  with pytest.raises(ValueError, match="devices"):
    plan_lib.candidate_meshes(0, 4, 2)


@pytest.mark.slow  # several compiles: minutes on two cores
def test_fsdp_divides_the_state_and_remat_cuts_temporaries():
  cfg = _cfg("--config.data.height=64", "--config.data.width=64")
  dev = jax.devices()
  rep = plan_lib.compile_plan(cfg, {"data": 4, "fsdp": 1, "tensor": 1}, "none", dev)
  fsdp = plan_lib.compile_plan(cfg, {"data": 1, "fsdp": 4, "tensor": 1}, "none", dev)
  full = plan_lib.compile_plan(cfg, {"data": 1, "fsdp": 4, "tensor": 1}, "full", dev)
  assert rep.ok and fsdp.ok and full.ok, (rep.error, fsdp.error, full.error)
  # Data parallelism replicates the train state; FSDP holds about a quarter of it per device
  # (the batch and the few unsharded leaves keep it above an exact quarter).
  assert fsdp.argument_bytes < 0.5 * rep.argument_bytes
  # Donation: the new state reuses the old one's buffers.
  assert rep.alias_bytes > 0.9 * (rep.argument_bytes - 8 * 5 * 64 * 64 * 3)
  # Remat keeps fewer activations for the backward pass and recomputes them.
  assert full.temp_bytes < fsdp.temp_bytes
  assert full.flops > fsdp.flops
  assert full.peak_bytes < fsdp.peak_bytes < rep.peak_bytes


@pytest.mark.slow  # several compiles: minutes on two cores
def test_plan_ranks_and_picks_the_cheapest_fit():
  cfg = _cfg()
  plans = plan_lib.plan(cfg, 4, remats=("none", "full"),
                        meshes=[{"data": 4, "fsdp": 1, "tensor": 1},
                                {"data": 1, "fsdp": 4, "tensor": 1}])
  assert len(plans) == 4 and all(p.ok for p in plans)
  roomy = plan_lib.cheapest_fit(plans, 1e12)
  assert roomy.remat == "none" and roomy.mesh["data"] == 4  # no recompute, least communication
  smallest = min(plans, key=lambda p: p.peak_bytes)
  tight = plan_lib.cheapest_fit(plans, smallest.peak_bytes)
  assert tight.peak_bytes == smallest.peak_bytes
  assert plan_lib.cheapest_fit(plans, smallest.peak_bytes - 1) is None
  table = plan_lib.format_table(plans, tight.peak_bytes)
  assert table.count("\n") == 5 and "fsdp4" in table


def test_a_candidate_that_cannot_compile_is_reported_not_fatal():
  cfg = _cfg()
  bad = plan_lib.compile_plan(cfg, {"data": 1, "fsdp": 1, "tensor": 3}, "none", jax.devices())
  assert not bad.ok and bad.error and "error" in bad.row()
  with pytest.raises(ValueError, match="remat"):
    plan_lib.compile_plan(cfg, {"data": 1, "fsdp": 1, "tensor": 1}, "sometimes", jax.devices())
  with pytest.raises(ValueError, match="local devices"):
    plan_lib.plan(cfg, 64)


@pytest.mark.slow  # several compiles: minutes on two cores
def test_longer_clips_need_more_memory():
  short = plan_lib.compile_plan(_cfg(), {"data": 1, "fsdp": 1, "tensor": 1}, "none",
                                jax.devices())
  long = plan_lib.compile_plan(plan_lib.with_video(_cfg(), frames=17), {"data": 1, "fsdp": 1,
                               "tensor": 1}, "none", jax.devices())
  assert long.temp_bytes > 1.5 * short.temp_bytes
  with pytest.raises(ValueError, match="frames"):
    plan_lib.with_video(_cfg(), frames=0)


def test_cli_prints_the_table_and_the_choice(capsys):
  rc = cli.main(["plan", "--config", "experiments/world.py:world32", "--devices", "1",
                 "--memory-gb", "100", "--remat", "none", *TINY])
  out = capsys.readouterr().out.strip().splitlines()
  assert rc == 0
  choice = json.loads(out[-1])
  assert choice["fits"] and choice["remat"] == "none"
  assert "--config.model.remat=none" in choice["overrides"]
  assert any(l.startswith("| data1") for l in out)
  rc = cli.main(["plan", "--config", "experiments/world.py:world32", "--devices", "1",
                 "--memory-gb", "0.000001", "--remat", "none", *TINY])
  assert rc == 1 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["fits"] is False
  assert cli.main(["plan", "--config", "experiments/world.py:world32", "--devices", "2",
                   "--memory-gb", "1", "--remat", "never", *TINY]) == 2
