"""`sorax demo`: the whole path, small, on CPU — train on the world, sample held-out prompts,
write mp4 + gif, score them with the oracle and print the table."""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import sorax
from sorax import config as config_lib

DEMO_CONFIG = pathlib.Path(sorax.__file__).resolve().parent.parent / "experiments" / "world.py"


def run_demo(*, workdir: str = "runs/demo", out: str = "demo_out", steps: int | None = None,
             num_prompts: int = 8, fresh: bool = False, safety=None,
             overrides: tuple[str, ...] = ()) -> int:
  """`overrides`: --config.key=value strings for the demo config (tests shrink it)."""
  from sorax.evaluate import evaluate_checkpoint
  from sorax.train.trainer import Trainer

  t0 = time.perf_counter()
  if fresh and pathlib.Path(workdir).exists():
    shutil.rmtree(workdir)
  cfg = config_lib.load_config(f"{DEMO_CONFIG}:demo", overrides)
  trainer = Trainer(cfg, workdir)
  total = cfg.train.steps if steps is None else steps
  print(f"[demo] training {total} steps on {cfg.data.height}x{cfg.data.width}x"
        f"{cfg.data.frames} world clips (resumes from {workdir} if present)", flush=True)
  metrics = trainer.fit(total)
  trainer.close()
  t_train = time.perf_counter() - t0
  print(f"[demo] sampling {num_prompts} held-out prompts", flush=True)
  result = evaluate_checkpoint(workdir, out, num_prompts=num_prompts, safety=safety)
  print(result.pop("table"))
  summary = {**result, "final_loss": metrics.get("loss"), "train_seconds": round(t_train, 1),
             "total_seconds": round(time.perf_counter() - t0, 1)}
  (pathlib.Path(out) / "scores.json").write_text(json.dumps(summary, indent=2))
  print(json.dumps(summary))
  return 0
