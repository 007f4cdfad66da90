"""Multi-host training on one machine: 2 processes (CPU devices, gloo collectives) through
train steps, a checkpoint save and a restore, against one process on the same global batch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from sorax.parallel import distributed


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _run(n: int, tmp_path, name: str) -> list[dict]:
  port = _free_port()
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  procs, outs = [], []
  for pid in range(n):
    out = tmp_path / f"{name}{pid}.json"
    outs.append(out)
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "tests.multihost_worker", str(pid), str(n), str(port),
         str(tmp_path / name), str(out)], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
  for p in procs:
    _, err = p.communicate(timeout=400)
    assert p.returncode == 0, err[-3000:]
  return [json.loads(o.read_text()) for o in outs]


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_two_processes_match_one_and_checkpoint_round_trips(tmp_path):
  two = _run(2, tmp_path, "two")
  one = _run(1, tmp_path, "one")[0]
  assert [r["process_count"] for r in two] == [2, 2] and two[0]["devices"] == 2
  np.testing.assert_allclose(two[0]["losses"], one["losses"], rtol=1e-5)
  assert two[0]["losses"] == two[1]["losses"]  # one global loss, seen by both
  for r in two:  # both restore the step and the weights they saved together
    assert r["restored_step"] == 3
    assert np.isclose(r["restored_checksum"], r["checksum"], rtol=1e-12)
  assert np.isclose(two[0]["checksum"], one["checksum"], rtol=1e-5)
  # Each process read its own share of the data: different clips.
  assert two[0]["own_ids"] != two[1]["own_ids"]
  assert len(two[0]["own_ids"]) == 2 and len(one["own_ids"]) == 4
  assert two[0]["dcn_rows"] == [0, 1]  # mesh.dcn_shape: the data axis spans the processes


def test_flags_are_checked():
  with pytest.raises(ValueError, match="go together"):
    distributed.initialize("localhost:1234", 2, None)
  with pytest.raises(ValueError, match="not in"):
    distributed.initialize("localhost:1234", 2, 2)
  with pytest.raises(ValueError, match="HOST:PORT"):
    distributed.initialize("localhost", 2, 0)
  assert distributed.initialize("localhost:1234", 1, 0) == "single"
  assert distributed.initialize(env={}) == "single"


def test_cluster_detection_from_the_environment():
  assert distributed.cluster_from_env({}) is None
  assert distributed.cluster_from_env({"TPU_WORKER_HOSTNAMES": "a"}) is None  # one worker
  assert distributed.cluster_from_env({"TPU_WORKER_HOSTNAMES": "a,b"}) == "tpu"
  assert distributed.cluster_from_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "1"}) == "slurm"
  assert distributed.cluster_from_env({"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
  assert distributed.cluster_from_env({"JAX_COORDINATOR_ADDRESS": "h:1"}) == "env"
