"""Preemption: SIGTERM makes `sorax train` save at the next step and exit 0; the rerun resumes
and continues the same loss curve bit for bit. And the loop's goodput metrics."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sorax.train.trainer import Trainer
from tests.test_config import WORLD
from tests.test_train import TINY, tiny

STEPS = 14
ARGS = [f"{WORLD}:demo", *TINY, f"--config.train.steps={STEPS}",
        "--config.train.checkpoint_every=1000"]  # no scheduled save before the end


def _train(workdir, *, kill_after: int | None = None):
  cmd = [sys.executable, "-m", "sorax.cli", "train", "--config", *ARGS[:1], "--workdir",
         str(workdir), "--no-progress", *ARGS[1:]]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  if kill_after is not None:
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
      if metrics.exists() and len(metrics.read_text().splitlines()) >= kill_after:
        proc.send_signal(signal.SIGTERM)
        break
      time.sleep(0.05)
  out, err = proc.communicate(timeout=300)
  return proc.returncode, out, err


def _losses(workdir):
  rows = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {r["step"]: r["loss"] for r in rows}


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_sigterm_saves_and_the_resumed_run_continues_bit_for_bit(tmp_path):
  code, _, err = _train(tmp_path / "straight")
  assert code == 0, err
  code, out, err = _train(tmp_path / "cut", kill_after=4)
  assert code == 0, err  # a clean exit, not a kill
  saved = sorted(int(p.name) for p in (tmp_path / "cut" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert saved and saved[-1] < STEPS, (saved, out, err)  # stopped early, with a checkpoint
  assert json.loads(out.strip().splitlines()[-1])["preempted"] is True
  code, _, err = _train(tmp_path / "cut")  # the rerun: resumes from the SIGTERM save
  assert code == 0, err
  a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "cut")
  assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
  assert all(a[s] == b[s] for s in a), [(s, a[s], b[s]) for s in a if a[s] != b[s]]


def test_metrics_report_step_time_data_wait_and_goodput(tmp_path):
  tr = Trainer(tiny("--config.train.steps=6", "--config.train.log_every=3"), tmp_path)
  last = tr.fit(progress=False)
  tr.close()
  rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [3, 6]
  for r in rows:
    assert r["step_time"] > 0 and 0 <= r["data_wait"] < r["step_time"]
    assert 0 < r["goodput"] < 1 and np.isclose(r["steps_per_s"] * r["step_time"], 1)
  assert rows[1]["goodput"] > rows[0]["goodput"]  # compilation weighs less as the run goes on
  assert not tr.preempted and tr.step == 6 and last["loss"] > 0
