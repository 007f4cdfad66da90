"""Does resampling a sample's first latent frame, given the rest, repair its track?

track_failures.py finds that a wrong straight track jumps between frame 0 and frame 1 far more
often than anywhere else (the causal fold encodes frame 0 alone). This probe takes saved
text-to-video candidates, resamples the latent frames named by --redo (default: frame 0) with
every other latent frame given (the `suffix` / `scattered` conditioning the model is trained
with), and scores both with the oracle. Prints one JSON line.

    python benchmarks/repair_probe.py --videos runs/rerank_v14_videos.npy --candidates 2
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from speedrun import heldout_prompts  # noqa: E402  (a sibling benchmark, not a package)

from sorax.data import oracle  # noqa: E402
from sorax.sample import Pipeline  # noqa: E402


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--videos", required=True)
  ap.add_argument("--prompts", type=int, default=128)
  ap.add_argument("--candidates", type=int, default=1)
  ap.add_argument("--redo", type=int, nargs="+", default=[0], help="latent frames to resample")
  ap.add_argument("--steps", type=int, default=None)
  ap.add_argument("--seed", type=int, default=100)
  ap.add_argument("--out", default=None, help="save the repaired videos (.npy)")
  args = ap.parse_args()
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None
  videos = np.load(args.videos)[:args.prompts, :args.candidates]
  n, k = videos.shape[:2]
  prompts, specs = heldout_prompts(n, *videos.shape[3:5], videos.shape[2])
  flat = videos.reshape((n * k,) + videos.shape[2:])
  fprompts = [p for p in prompts for _ in range(k)]
  fspecs = [s for s in specs for _ in range(k)]
  known = pipe.encode(flat)
  given = np.ones(known.shape[:2], bool)
  given[:, args.redo] = False
  t0 = time.perf_counter()
  fixed = pipe.generate(fprompts, known=known, given=given, seed=args.seed, steps=args.steps,
                        batch_size=32)
  seconds = time.perf_counter() - t0
  before = oracle.score_videos(list(flat), fspecs)
  after = oracle.score_videos(list(fixed), fspecs)
  line = {"benchmark": "repair_probe", "checkpoint": args.checkpoint or "shipped",
          "videos": args.videos, "prompts": n, "candidates": k, "redo": args.redo,
          "steps": args.steps, "seconds": round(seconds, 1)}
  for name in ("all_right", "motion", "shape", "size", "color", "no_extra"):
    line[f"{name}_before"] = round(float(before[name]), 4)
    line[f"{name}_after"] = round(float(after[name]), 4)
  if args.out:
    np.save(args.out, fixed.reshape(videos.shape))
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()
