"""Sampling settings swept against the oracle on one trained model (no training): CFG scale,
sampler steps, the sampler (ODE or the stochastic `renoise`) and the guidance interval, on the
speedrun's fixed held-out prompts (so rows compare with the speedrun table). One JSON line per
setting, also appended to --log.

    python benchmarks/sampler_sweep.py [--checkpoint F.safetensors] [--prompts 128] \
        --grid "heun:24:3" "heun:24:2" "renoise:48:3:eta=0.5" "heun:24:3:lo=0.1,hi=0.8"

A grid item is SAMPLER:STEPS:CFG[:eta=E][,lo=L][,hi=H][,guide=logits][,best=K][,judge=J]
[,late=T,eta2=E2][,shift=S][,stop=L,kmin=M]
(late/eta2: renoise's eta is E2 on the steps that start below t = T; shift: the time warp of
the sampler's steps, > 1 spends more of them at high noise; default the training warp).
Heun costs two model calls a step, the first-order samplers one, so "heun:24" and "euler:48" /
"renoise:48" cost the same. best=K keeps one of K samples a prompt (K x the cost), picked by
judge=J (self: the model's own pick, the default; captioner: the learned world captioner's);
stop=L makes it adaptive (a prompt stops after kmin candidates once the captioner's log p of
the kept one reaches L; the line's mean_draws is the cost). --skip N drops
the first N prompts (a fresh part of the same fixed set, e.g. to check a choice made on them;
each prompt keeps its own noise, the same as with no --skip).
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
from sorax.evaluate import json_safe, motion_confusion  # noqa: E402
from sorax.sample import Pipeline  # noqa: E402


def parse_item(item: str) -> dict:
  parts = item.split(":")
  if len(parts) not in (3, 4):
    raise SystemExit(f"grid item {item!r}: want SAMPLER:STEPS:CFG[:k=v,...]")
  out = dict(sampler=parts[0], steps=int(parts[1]), cfg_scale=float(parts[2]), eta=None,
             lo=0.0, hi=1.0, guide=None, best=1, judge=None, late=None, eta2=None, stop=None,
             kmin=None,
             shift=None)
  for kv in (parts[3].split(",") if len(parts) == 4 else []):
    k, _, v = kv.partition("=")
    if k not in ("eta", "lo", "hi", "guide", "best", "judge", "late", "eta2", "shift", "stop",
                 "kmin"):
      raise SystemExit(f"grid item {item!r}: unknown key {k!r} (eta, lo, hi, guide, best, "
                       "judge, late, eta2, shift, stop, kmin)")
    out[k] = v if k in ("guide", "judge") else int(v) if k in ("best", "kmin") else float(v)
  if (out["late"] is None) != (out["eta2"] is None):
    raise SystemExit(f"grid item {item!r}: late and eta2 go together")
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--checkpoint", default=None, help="weights file or workdir (default: shipped)")
  ap.add_argument("--prompts", type=int, default=128)
  ap.add_argument("--grid", nargs="+", default=["heun:24:3"])
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--skip", type=int, default=0, help="drop the first N of the --prompts")
  ap.add_argument("--log", default="runs/sampler_sweep.jsonl")
  ap.add_argument("--breakdown", action="store_true",
                  help="also all-right (and motion) by objects, wall and moving/static, and per "
                       "asked motion what the oracle reads (sorax.evaluate.motion_confusion)")
  ap.add_argument("--videos", default=None,
                  help="save the first grid item's samples here (.npy, [n, 1, T, H, W, 3]: the "
                       "layout benchmarks/track_failures.py reads)")
  args = ap.parse_args()
  items = [parse_item(g) for g in args.grid]  # all errors before any sampling
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None  # world prompts; the benchmark measures the model, not the guard
  d = pipe.cfg.data
  prompts, specs = heldout_prompts(args.prompts, d.height, d.width, d.frames)
  prompts, specs = prompts[args.skip:], specs[args.skip:]
  log = pathlib.Path(args.log)
  log.parent.mkdir(parents=True, exist_ok=True)
  for i, (g, it) in enumerate(zip(args.grid, items)):
    t0 = time.perf_counter()
    report: dict = {}
    videos = pipe.generate(prompts, seed=args.seed, steps=it["steps"], cfg_scale=it["cfg_scale"],
                           sampler=it["sampler"], eta=it["eta"],
                           eta_late=(() if it["late"] is None else (it["late"], it["eta2"])),
                           guidance_interval=(it["lo"], it["hi"]), guide=it["guide"],
                           best_of=it["best"], judge=it["judge"], time_shift=it["shift"],
                           best_of_stop=it["stop"], best_of_min=it["kmin"], report=report,
                           rows=np.arange(args.skip, args.prompts), batch_size=32)
    if args.videos and i == 0:
      tmp = pathlib.Path(args.videos + ".tmp.npy")
      np.save(tmp, np.asarray(videos)[:, None])
      tmp.replace(args.videos)
    rates = json_safe(oracle.score_videos(list(videos), specs))
    line = {"benchmark": "sampler_sweep", "checkpoint": args.checkpoint or "shipped",
            "setting": g, **it, "prompts": args.prompts, "skip": args.skip, "seed": args.seed,
            "sample_s": round(time.perf_counter() - t0, 1),
            "mean_draws": round(float(report["draws"].mean()), 3),
            **{k: (None if v is None else round(v, 4)) for k, v in rates.items()}}
    if args.breakdown:
      line["breakdown"] = breakdown(videos, specs)
      line["motion_confusion"] = motion_confusion(list(videos), specs)
    print(json.dumps(line), flush=True)
    with log.open("a") as f:
      f.write(json.dumps(line) + "\n")


def breakdown(videos, specs) -> dict[str, dict]:
  """all_right / motion rates per kind of prompt: how many objects, a wall or not, and whether
  every object is static, so a failing check can be traced to the prompts it fails on."""
  rows = [(oracle.score_video(v, s), s) for v, s in zip(videos, specs)]
  groups = {}
  for r, s in rows:
    keys = (f"objects={len(s.objects)}", f"wall={bool(s.wall)}",
            "motion=" + ("static" if all(o.motion == "static" for o in s.objects) else "moving"))
    for k in keys:
      groups.setdefault(k, []).append(r)
  return {k: {"n": len(rs), "all_right": round(float(np.mean([r["all_right"] for r in rs])), 4),
              "motion": round(float(np.mean([r["motion"] for r in rs])), 4),
              "shape": round(float(np.mean([r["shape"] for r in rs])), 4)}
          for k, rs in sorted(groups.items())}


if __name__ == "__main__":
  main()
