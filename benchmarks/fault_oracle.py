"""How our oracle reads the faults a judge is taught to call `broken` (sorax/data/faults.py):
each fault painted on one object of world clips, then the oracle's reading of that object's
motion and of the whole clip. One JSON line: per fault, the share still read right.

    python benchmarks/fault_oracle.py [--clips 120]
"""

from __future__ import annotations

import argparse
import collections
import json

import numpy as np

from sorax.data import faults, oracle, world
from sorax.data.spec import OBJECT_COLORS


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--clips", type=int, default=120)
  ap.add_argument("--seed", type=int, default=71, help="world seed (clips from index 50,000)")
  args = ap.parse_args()
  rng = np.random.default_rng(0)
  reads = collections.defaultdict(list)
  for i in range(args.clips):
    clip = world.make_clip(args.seed, 50_000 + i, 32, 32, 17)
    spec, bg = clip.spec, world.BACKGROUNDS[clip.spec.background]
    for r, o in enumerate(spec.objects):
      for f in faults.DEFAULT_FAULTS:  # the recorded run's faults (stall came later)
        ex = oracle.explain_video(faults.paint(clip.video, OBJECT_COLORS[o.color], f, rng, bg),
                                  spec)
        reads[f].append((ex["objects"][r]["motion"] == o.motion, bool(ex["checks"]["all_right"])))
  line = {"benchmark": "fault_oracle", "clips": args.clips}
  for f, v in reads.items():
    a = np.asarray(v, bool)
    line[f] = {"n": len(a), "motion_right": round(float(a[:, 0].mean()), 3),
               "all_right": round(float(a[:, 1].mean()), 3)}
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()
