"""Does a motion word steer the sample, or the noise? The same noise, prompts that differ only in
the direction word ("moving left" vs "moving right", "moving up" vs "moving down"), one object
each on a black background; per pair the object's displacement from its first to its last seen
frame. A model that reads the word moves the two the opposite ways (correlation near -1); one
that takes the direction from the noise moves both the same way (correlation near +1).

    python benchmarks/word_swap.py [--checkpoint F.safetensors] [--seed 0] [--cfg S]

Prints one JSON line per axis and a summary line (the mean correlation over both axes).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from motion_tracks import track  # noqa: E402

from sorax.sample import Pipeline  # noqa: E402

PAIRS = {"x": ("moving left", "moving right"), "y": ("moving up", "moving down")}
OBJECTS = [(c, s, z) for c in ("red", "cyan", "yellow", "green", "blue", "white", "orange",
                               "magenta") for s, z in (("circle", "large"), ("square", "small"))]
MOVED = 2.0  # pixels: a displacement smaller than this counts as no move


def displacement(video: np.ndarray, color: str, axis: str) -> float:
  """Last minus first centroid (pixels) along `axis` over the frames the colour is seen in."""
  xs, ys = track(video, color)
  tr = np.array(xs if axis == "x" else ys)
  seen = tr[tr >= 0]
  return float(seen[-1] - seen[0]) if len(seen) >= 2 else 0.0


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None, help="weights file or workdir (default: shipped)")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
  args = ap.parse_args()
  pipe = Pipeline.load(args.checkpoint)
  corrs = []
  for axis, (neg, pos) in PAIRS.items():
    d = {}
    for word in (neg, pos):
      prompts = [f"{z} {c} {s} {word} on a black background" for c, s, z in OBJECTS]
      # One call per word with the same seed and batch: object i gets the same noise in both.
      videos = np.asarray(pipe.generate(prompts, seed=args.seed, cfg_scale=args.cfg, best_of=1))
      d[word] = np.array([displacement(v, c, axis) for (c, _, _), v in zip(OBJECTS, videos)])
    corr = float(np.corrcoef(d[neg], d[pos])[0, 1]) if d[neg].std() and d[pos].std() else 0.0
    corrs.append(corr)
    print(json.dumps({"axis": axis, "words": [neg, pos], "pairs": len(OBJECTS),
                      "right_way": {neg: float((d[neg] < -MOVED).mean()),
                                    pos: float((d[pos] > MOVED).mean())},
                      "same_way": float((np.sign(d[neg]) == np.sign(d[pos])).mean()),
                      "correlation": round(corr, 3),
                      "displacement": {w: v.round(1).tolist() for w, v in d.items()}}))
  print(json.dumps({"benchmark": "word_swap", "checkpoint": args.checkpoint or "shipped",
                    "seed": args.seed, "cfg": args.cfg, "correlation_x": round(corrs[0], 3),
                    "correlation_y": round(corrs[1], 3), "mean_correlation":
                    round(float(np.mean(corrs)), 3)}))


if __name__ == "__main__":
  main()
