"""The verbs on given frames, measured on held-out world specs with the oracle (issue 9).

    python benchmarks/verbs_eval.py [--checkpoint F.safetensors|workdir] [--prompts 32]
        [--verbs animate,extend,...] [--steps N] [--context N]

For each held-out spec (evaluate.heldout_specs, terse captions) the ground-truth render gives
the known frames, and each verb's output is scored against the same spec:
- animate: frame 0 = the spec's first frame; PSNR of frame 0 against it, then the oracle.
- extend / extend_back: a 17-frame ground-truth clip extended by 2 s after (before) it; PSNR of
  the kept frames, the oracle on the joined clip, and the seam ratio at the join.
- fill: frames 6-11 of a ground-truth clip remade; oracle and both seams.
- interpolate: first and last ground-truth frames; oracle and seams.
- connect: ground truth frames [0, 17) and [17 + g, 34 + g) joined by the made bridge of g frames
  (the spec rendered at 34 + g frames is what the joined clip should look like).
- loop: a text-to-video clip and its bridge; the seam ratio across the loop (last frame -> first).
- edit: strength 0 (PSNR against the input) and strength 1 (the oracle for the prompt).

The seam ratio is the mean absolute frame difference across a seam over the mean of the clip's
other consecutive-frame differences (floored at FLOOR levels, for still clips); <= 1 means the seam is no larger than a step inside.
For extend, `seam_all` is the same ratio over every window's join (the given video's and each
later window's with the one before), so more windows (a longer `--context`) cannot hide their
own joins among the steps "inside".
Prints one JSON line per verb and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from sorax import verbs
from sorax.data import oracle, world
from sorax.diffusion import conditioning as cond
from sorax.evaluate import heldout_specs
from sorax.sample import Pipeline

# Frame differences below this (mean |step| in 0-255 levels) count as a still clip.
FLOOR = 0.5
CHECKS = ("all_right", "color", "shape", "size", "motion", "no_extra")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
  return 99.0 if mse == 0 else min(99.0, 10 * math.log10(255.0 ** 2 / mse))


def frame_diffs(video: np.ndarray) -> np.ndarray:
  v = video.astype(np.float32)
  return np.abs(v[1:] - v[:-1]).mean(axis=(1, 2, 3))  # [T - 1]: diff k is frames k -> k + 1


def seam_ratio(video: np.ndarray, seams: list[int]) -> float:
  """Mean diff across the seams (seam k: between frames k - 1 and k) over the median inside."""
  d = frame_diffs(video)
  at = [s - 1 for s in seams]
  inside = np.delete(d, at)
  return float(np.mean(d[at]) / max(float(np.mean(inside)) if len(inside) else 0.0, FLOOR))


def loop_ratio(video: np.ndarray) -> float:
  d = frame_diffs(video)
  wrap = float(np.abs(video[0].astype(np.float32) - video[-1].astype(np.float32)).mean())
  return wrap / max(float(np.mean(d)), FLOOR)


def extend_joins(groups: list[list[int]], f: int, length: int, context: int | None,
                 back: bool) -> list[int]:
  """Every join in an `extend` of an f-frame video to `length` frames: the given video's, and
  each later window's with the one before (seam k: between frames k - 1 and k)."""
  m = verbs._context(groups, len(groups) // 2 if context is None else context, f, back)
  new = f - len(sum(groups[-m:] if back else groups[:m], []))  # frames a window adds
  joins = list(range(f, length, new))
  return sorted(length - j for j in joins) if back else joins


def run_verb(name, pipe, specs, prompts, h, w, f, kw, first: int = 0,
             context: int | None = None):
  """Spec i of the list is held-out spec first + i, sampled with seed first + i. `context`:
  extend's latent frames of context a window (None: verbs.extend's default, half a window)."""
  rows = []
  groups = cond.frame_groups(pipe.codec, f)
  if name in ("edit", "t2v"):  # no given frames to join
    kw = {k: v for k, v in kw.items() if k != "best_of"}
  for i, (spec, prompt) in enumerate(zip(specs, prompts)):
    kw_i = dict(kw, seed=first + i)
    gt = world.render(spec, h, w, f)
    row = {}
    if name == "animate":
      out = verbs.animate(pipe, gt[0], prompt, **kw_i)
      row.update(psnr=psnr(out[0], gt[0]), **oracle.score_video(out, spec))
    elif name in ("extend", "extend_back"):
      back = name == "extend_back"
      out = verbs.extend(pipe, gt, 2.0, "backward" if back else "forward", prompt,
                         context=context, **kw_i)
      kept = out[-f:] if back else out[:f]
      seam = len(out) - f if back else f
      row.update(psnr=psnr(kept, gt), seam=seam_ratio(out, [seam]),
                 seam_all=seam_ratio(out, extend_joins(groups, f, len(out), context, back)),
                 **oracle.score_video(out, spec))
    elif name == "fill":
      out = verbs.fill(pipe, gt, (6, 11), prompt, **kw_i)
      row.update(psnr=psnr(out[:6], gt[:6]), seam=seam_ratio(out, [6, 12]),
                 **oracle.score_video(out, spec))
    elif name == "interpolate":
      out = verbs.interpolate(pipe, gt[0], gt[-1], prompt, **kw_i)
      made = [k for k in range(1, f) if k not in groups[-1]]
      row.update(psnr=psnr(out[0], gt[0]), seam=seam_ratio(out, [made[0], made[-1] + 1]),
                 **oracle.score_video(out, spec))
    elif name == "connect":
      m = verbs.bridge_context(groups)
      g = f - len(sum(groups[:m], [])) - len(sum(groups[-m:], []))
      full = world.render(spec, h, w, 2 * f + g)
      a, b = full[:f], full[f + g:]
      out = verbs.connect(pipe, a, b, prompt, **kw_i)
      row.update(psnr=psnr(out[:f], a), seam=seam_ratio(out, [f, f + g]),
                 **oracle.score_video(out, spec))
    elif name == "loop":
      out = verbs.loop(pipe, prompt, **kw_i)
      row.update(seam=loop_ratio(out), **oracle.score_video(out[:f], spec))
    elif name == "edit":
      same = verbs.edit(pipe, gt, prompt, 0.0, **kw_i)
      other = specs[(i + 1) % len(specs)]  # a new prompt: the next spec's caption
      new = verbs.edit(pipe, gt, prompts[(i + 1) % len(specs)], 1.0, **kw_i)
      row.update(psnr=psnr(same, gt), **oracle.score_video(new, other))
    elif name == "t2v":
      out = pipe.generate([prompt], seed=first + i,
                          **{k: v for k, v in kw.items() if v is not None})[0]
      row.update(**oracle.score_video(out, spec))
    rows.append(row)
  return rows


def summarize(name, rows, seconds):
  s = {"verb": name, "n": len(rows), "seconds": round(seconds, 1)}
  for key in CHECKS:
    vals = [r[key] for r in rows if r.get(key) is not None]
    s[key] = round(float(np.mean(vals)), 3) if vals else None
  if any("psnr" in r for r in rows):
    s["psnr_min"] = round(min(r["psnr"] for r in rows), 2)
  if any("seam" in r for r in rows):
    seams = np.array([r["seam"] for r in rows])
    s["seam_median"] = round(float(np.median(seams)), 3)
    s["seam_le_1"] = round(float(np.mean(seams <= 1.0)), 3)
  if any("seam_all" in r for r in rows):  # extend: every window's join, not only the first
    s["seam_all_median"] = round(float(np.median([r["seam_all"] for r in rows])), 3)
  return s


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--prompts", type=int, default=32)
  ap.add_argument("--skip", type=int, default=0,
                  help="start at held-out spec SKIP (a set no earlier choice looked at)")
  ap.add_argument("--verbs", default="t2v,animate,extend,extend_back,fill,interpolate,connect,"
                  "loop,edit")
  ap.add_argument("--steps", type=int, default=None)
  ap.add_argument("--sampler", default=None, help="default: the checkpoint's sample.sampler")
  ap.add_argument("--eta", type=float, default=None)
  ap.add_argument("--eta-late", default=None, metavar="T,E",
                  help="renoise's eta is E on the steps below t = T (default: the checkpoint's)")
  ap.add_argument("--quiet", type=int, default=None,
                  help="latent frames next to given ones sampled without fresh noise")
  ap.add_argument("--best-of", type=int, default=None,
                  help="candidates per window, the smoothest join kept (verbs.window; default "
                       "verbs.VERB_BEST_OF)")
  ap.add_argument("--guide-context", type=float, default=None,
                  help="guidance scale toward the given frames (Pipeline.generate; 0: off)")
  ap.add_argument("--context", type=int, default=None,
                  help="extend / extend_back: latent frames of context a window (default: half)")
  ap.add_argument("--out", default=None, help="append the JSON lines to this file")
  args = ap.parse_args(argv)
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None  # world captions only
  d = pipe.cfg.data
  h, w, f = int(d.height), int(d.width), int(d.frames)
  specs = heldout_specs(args.skip + args.prompts, h, w, f, max_objects=3, wall_prob=0.25)
  rng = np.random.default_rng(0)
  prompts = [world.caption(s, "terse", rng) for s in specs][args.skip:]
  specs = specs[args.skip:]
  kw = {"steps": args.steps, "sampler": args.sampler, "eta": args.eta, "quiet": args.quiet,
        "eta_late": (tuple(float(v) for v in args.eta_late.split(",")) if args.eta_late
                     else () if args.eta_late == "" else None), "best_of": args.best_of,
        "guide_context": args.guide_context}
  lines = []
  for name in args.verbs.split(","):
    t0 = time.perf_counter()
    rows = run_verb(name, pipe, specs, prompts, h, w, f, kw, args.skip, args.context)
    s = summarize(name, rows, time.perf_counter() - t0)
    s["checkpoint"] = args.checkpoint or "shipped"
    s.update({k: v for k, v in kw.items() if v is not None})
    s["step"], s["skip"] = pipe.step, args.skip
    if args.context is not None and name in ("extend", "extend_back"):
      s["context"] = args.context
    print(json.dumps(s), flush=True)
    lines.append(s)
  if args.out:
    with open(args.out, "a", encoding="utf-8") as fh:
      for s in lines:
        fh.write(json.dumps(s) + "\n")
  cols = ["verb", "n", *CHECKS, "psnr_min", "seam_median", "seam_le_1"]
  print("| " + " | ".join(cols) + " |", file=sys.stderr)
  print("|" + "---|" * len(cols), file=sys.stderr)
  for s in lines:
    print("| " + " | ".join(str(s.get(c, "")) for c in cols) + " |", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
