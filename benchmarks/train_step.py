"""Train-step throughput of an experiment config on the local devices; prints one JSON line.

    python benchmarks/train_step.py --config experiments/world.py:demo [--steps 20] [--config.k=v ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import numpy as np

from sorax import config as config_lib
from sorax.train.trainer import Trainer, num_tokens


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="experiments/world.py:demo")
  parser.add_argument("--steps", type=int, default=20)
  args, overrides = parser.parse_known_args()
  cfg = config_lib.load_config(args.config, overrides)
  with tempfile.TemporaryDirectory() as workdir:
    trainer = Trainer(cfg, workdir)
    batch = next(trainer.data)
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.train_step(batch))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
      t0 = time.perf_counter()
      jax.block_until_ready(trainer.train_step(batch))
      times.append(time.perf_counter() - t0)
    trainer.close()
  d = cfg.data
  step_s = float(np.median(times))
  tokens = num_tokens(cfg, d.frames, d.height, d.width) * d.batch_size
  print(json.dumps({
      "benchmark": "train_step", "config": args.config, "overrides": overrides,
      "device": str(jax.devices()[0].device_kind), "n_devices": jax.device_count(),
      "batch": d.batch_size, "video_tokens_per_step": tokens, "compile_s": round(compile_s, 2),
      "step_ms_median": round(step_s * 1e3, 2), "step_ms_min": round(min(times) * 1e3, 2),
      "clips_per_s": round(d.batch_size / step_s, 2), "tokens_per_s": round(tokens / step_s, 1)}))


if __name__ == "__main__":
  main()
