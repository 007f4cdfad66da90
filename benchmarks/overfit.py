"""Overfit test: can the model learn a fixed small set of clips sharply?

Trains a recipe for M minutes on only the first `--clips` world clips (`data.num_clips`), then
samples each clip's own caption and scores it with the oracle against that clip's spec. If a
recipe cannot get a handful of memorised clips right, the model (not data or steps) is what
limits it; if it can, generalisation is. Prints one JSON line:

    python benchmarks/overfit.py --config experiments/world.py:world32 --clips 8 --minutes 10 \
        [--config.key=value ...] [--seeds 2] [--out runs/overfit]

Also reported: the oracle on the training clips themselves (the ceiling: 1.0 by construction)
and the PSNR of each sample against its training clip (memorisation makes it high; the oracle
never reads start positions, so a right sample may still sit elsewhere).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from speedrun import pipeline_of, train_for  # noqa: E402

from sorax import config as config_lib  # noqa: E402
from sorax.data import oracle  # noqa: E402
from sorax.data.pipeline import WorldSource  # noqa: E402
from sorax.evaluate import json_safe, verdict  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def training_clips(cfg, n: int):
  d = cfg.data
  src = WorldSource(seed=d.seed, num_clips=n, height=d.height, width=d.width, frames=d.frames,
                    max_objects=d.max_objects, wall_prob=d.wall_prob,
                    caption_levels=list(d.caption_levels),
                    caption_weights=list(d.caption_weights))
  return [src[i] for i in range(n)]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--config", default="experiments/world.py:world32")
  ap.add_argument("--clips", type=int, default=8)
  ap.add_argument("--minutes", type=float, default=10.0)
  ap.add_argument("--seeds", type=int, default=2, help="samples per caption (seeds 0..S-1)")
  ap.add_argument("--name", default="")
  ap.add_argument("--out", default="", help="write a contact sheet (clips, then samples) here")
  args, overrides = ap.parse_known_args(argv)
  if args.clips < 1 or args.seeds < 1:
    ap.error("--clips and --seeds must be >= 1")
  cfg = config_lib.load_config(args.config, overrides)
  with cfg.unlocked():
    cfg.data.num_clips = args.clips
    cfg.train.checkpoint_every = 10 ** 9
  clips = training_clips(cfg, args.clips)
  captions = [c["caption"] for c in clips]
  specs = [c["spec"] for c in clips]

  with tempfile.TemporaryDirectory() as workdir:
    trainer, steps, train_s = train_for(cfg, workdir, args.minutes)
    pipe = pipeline_of(trainer, steps)
    t1 = time.perf_counter()
    samples = [pipe.generate(captions, seed=s, best_of=1) for s in range(args.seeds)]
    eval_s = time.perf_counter() - t1
    trainer.close()

  flat = [v for batch in samples for v in batch]
  flat_specs = specs * args.seeds
  results = [oracle.score_video(v, s) for v, s in zip(flat, flat_specs)]
  rates = json_safe(oracle.score_videos(flat, flat_specs))
  ceiling = json_safe(oracle.score_videos([c["video"] for c in clips], specs))
  psnrs = [psnr(v, clips[i % args.clips]["video"]) for i, v in enumerate(flat)]
  line = {"benchmark": "overfit", "name": args.name, "config": args.config,
          "overrides": overrides, "clips": args.clips, "seeds": args.seeds,
          "minutes": args.minutes, "steps": steps, "train_s": round(train_s, 1),
          "eval_s": round(eval_s, 1), "ceiling_all_right": ceiling["all_right"],
          "psnr_mean": round(float(np.mean(psnrs)), 2),
          **{k: (None if v is None else round(v, 4)) for k, v in rates.items()}}
  print(json.dumps(line), flush=True)
  for i, r in enumerate(results):
    print(f"  clip {i % args.clips} seed {i // args.clips}: {verdict(r)}  "
          f"(psnr {psnrs[i]:.1f})  {captions[i % args.clips]}", file=sys.stderr)
  if args.out:
    from sorax.contact_sheet import contact_sheet
    from sorax.safety.guard import load_safety
    videos = [c["video"] for c in clips] + flat
    notes = ["training clip"] * args.clips + [verdict(r) for r in results]
    sheet = contact_sheet(videos, captions * (args.seeds + 1), notes=notes)
    f = load_safety().write_image(sheet, "overfit_sheet", args.out, model=f"sorax-dit@{steps}",
                                  config=cfg.to_dict())
    print(f"contact sheet: {f}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
