"""Held-out denoising loss of weights files (sorax/train/validate.py on fixed clips, noise and
noise levels): one JSON line per file, so two checkpoints compare without sampling.

    python benchmarks/val_loss.py sorax/assets/world32.safetensors runs/v17.safetensors
"""

from __future__ import annotations

import argparse
import json
import time

from sorax.sample import Pipeline
from sorax.train.validate import val_losses


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("files", nargs="+", help="weights files (.safetensors) or workdirs")
  ap.add_argument("--clips", type=int, default=64)
  args = ap.parse_args()
  for f in args.files:
    t0 = time.perf_counter()
    pipe = Pipeline.load(f)
    losses = val_losses(pipe.graphdef, pipe.params, pipe.codec, pipe.tokenizer, pipe.cfg,
                        n=args.clips)
    print(json.dumps({"benchmark": "val_loss", "file": f, "clips": args.clips,
                      **{k: round(float(v), 6) for k, v in losses.items()},
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
  main()
