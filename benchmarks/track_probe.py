"""The track loss on a trained model: its size and its step cost, before training with it.

    python benchmarks/track_probe.py [--checkpoint sorax/assets/world32.safetensors] [--weight 0.5]
        [--config.model.depth=8 ...]

Loads the weights into the shipped recipe's trainer twice, with `diffusion.track_weight` 0 and
`--weight`, at lr 0 (the weights do not move), runs the same 4 batches (the same noise: the rng
is per step), and prints one JSON line: each run's step losses and median step time, and the
track loss's value per batch (the difference of the losses over the weight; sorax/train/step.py
track_loss; BUILD_NOTES, v14).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import jax
import numpy as np

from sorax import config as config_lib
from sorax.train.trainer import Trainer

# The shipped checkpoint's recipe (BUILD_NOTES, v12-v14), at lr 0.
RECIPE = ["--config.data.caption_weights=[1.0,0.0,0.0]", "--config.diffusion.object_weight=1",
          "--config.diffusion.motion_weight=4", "--config.diffusion.text_id_weight=0.1",
          "--config.model.pooled_text=True", "--config.model.palette_head=True",
          "--config.diffusion.palette_weight=1.0", "--config.model.slots=4",
          "--config.diffusion.slot_weight=0.1", "--config.model.depth=8", "--config.optim.lr=0.0"]


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", default="sorax/assets/world32.safetensors")
  p.add_argument("--weight", type=float, default=0.5)
  p.add_argument("--batches", type=int, default=4)
  args, overrides = p.parse_known_args()
  base = RECIPE + [f"--config.train.init_from={args.checkpoint}"] + overrides
  out = {}
  for weight in (0.0, args.weight):
    cfg = config_lib.load_config("experiments/world.py:world32",
                                 base + [f"--config.diffusion.track_weight={weight}"])
    with tempfile.TemporaryDirectory() as workdir:
      trainer = Trainer(cfg, workdir)
      batches = [next(trainer.data) for _ in range(args.batches)]
      losses = [float(trainer.train_step(b)["loss"]) for b in batches]
      times = []
      for b in batches * 3:
        t0 = time.perf_counter()
        jax.block_until_ready(trainer.train_step(b))
        times.append(time.perf_counter() - t0)
      trainer.close()
    out[weight] = {"losses": [round(x, 5) for x in losses],
                   "step_ms": round(1e3 * float(np.median(times)))}
  track = [round((a - b) / args.weight, 4)
           for a, b in zip(out[args.weight]["losses"], out[0.0]["losses"])]
  print(json.dumps({"benchmark": "track_probe", "checkpoint": args.checkpoint,
                    "weight": args.weight, "without": out[0.0], "with": out[args.weight],
                    "track_loss": track}))


if __name__ == "__main__":
  main()
