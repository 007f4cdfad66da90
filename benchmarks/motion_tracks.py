"""Where a model's motion fails: one-object prompts per motion, each object's colour centroid per
frame and the oracle's reading. One JSON line per prompt, then a summary line.

    python benchmarks/motion_tracks.py [--checkpoint F.safetensors] [--seed 0]

A track that moves at the right speed for a few frames and then jumps (between latent frames)
is a coherence failure; a steady track the wrong way is a text-binding failure; a start in the
wrong third breaks the world's placement rule (WORLD.md "Random specs").
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sorax.data import oracle, world
from sorax.sample import Pipeline

MOTIONS = ("moving left", "moving right", "moving up", "moving down", "falling", "bouncing")
OBJECTS = (("red", "circle", "large"), ("cyan", "square", "small"), ("yellow", "diamond", "large"))


def track(video: np.ndarray, color: str) -> tuple[list[float], list[float]]:
  """Centroid (x, y) per frame of the pixels nearest `color` (-1 where absent)."""
  rgb = np.array(world.OBJECT_COLORS[color], np.int32)
  near = np.abs(video.astype(np.int32) - rgb).sum(-1) < 60  # [T, H, W]
  xs, ys = [], []
  for f in near:
    i, j = np.nonzero(f)
    xs.append(round(float(j.mean()), 1) if len(j) else -1.0)
    ys.append(round(float(i.mean()), 1) if len(i) else -1.0)
  return xs, ys


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None, help="weights file or workdir (default: shipped)")
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args()
  pipe = Pipeline.load(args.checkpoint)
  prompts = [f"{size} {color} {shape} {m} on a black background"
             for m in MOTIONS for color, shape, size in OBJECTS]
  videos = np.asarray(pipe.generate(prompts, seed=args.seed, best_of=1))
  right = 0
  for p, v in zip(prompts, videos):
    spec = world.parse_terse(p)
    e = oracle.explain_video(v, spec)
    o = e["objects"][0]
    xs, ys = track(v, spec.objects[0].color)
    right += bool(o["motion_ok"])
    print(json.dumps({"prompt": p, "motion_read": o["motion"], "motion_ok": o["motion_ok"],
                      "shape": o["shape"], "x": xs, "y": ys}))
  print(json.dumps({"bench": "motion_tracks", "checkpoint": args.checkpoint or "shipped",
                    "prompts": len(prompts), "motion_right": right}))


if __name__ == "__main__":
  main()
