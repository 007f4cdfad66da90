"""Adaptive best of K: how many candidates does the captioner's stopping rule need, and how
often is what it keeps all right?

Candidates are drawn round by round for the held-out prompts [skip, skip + n) (the speedrun's
fixed set, terse captions, 32x32x17): every prompt gets --k-all candidates, and a prompt whose
best captioner log p so far is below --bound draws on, up to --k-max. Candidate j of prompt i
is the one Pipeline.generate draws (seed j, row i: its noise depends on nothing else), so
every policy below is what generate returns (checked on prompts 512-519: the same draws and
picks; log p within 0.002, the float rounding of another batch size):
  fixed K <= k_all (best_of=K, no stop), and
  stop S <= bound with best_of_min M and best_of K <= k_max (best_of_stop=S).
Each candidate's captioner log p and oracle checks are cached in --cache (.npz, resumed round
by round), so a second call only prints. Prints one JSON line per policy: all-right, each
check, by object count, and the mean candidates drawn (the cost, in units of one sample).

    python benchmarks/adaptive_best_of.py --prompts 512 --skip 384 --cache runs/adaptive384.npz \
        [--plot docs/figures/F.png]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from speedrun import heldout_prompts  # noqa: E402  (a sibling benchmark, not a package)

from sorax.data import oracle  # noqa: E402

CHECKS = ("all_right", "color", "shape", "size", "motion", "no_extra")


def keep(lp: np.ndarray, k_max: int, stop: float | None,
         k_min: int) -> tuple[np.ndarray, np.ndarray]:
  """lp [n, K] (nan: not drawn) -> (kept candidate [n], candidates drawn [n]) of best of k_max
  with the stopping rule, as Pipeline.generate: keep the first maximum so far; stop after k_min
  once it reaches `stop`."""
  n = lp.shape[0]
  kept, drawn = np.zeros(n, np.int64), np.zeros(n, np.int64)
  for i in range(n):
    best = -np.inf
    for j in range(k_max):
      if np.isnan(lp[i, j]):
        raise ValueError(f"prompt {i} needs candidate {j}, not drawn: raise --k-all/--bound")
      if lp[i, j] > best:
        best, kept[i] = lp[i, j], j
      drawn[i] = j + 1
      if stop is not None and j + 1 >= k_min and best >= stop:
        break
  return kept, drawn


def summarize(name: str, kept, drawn, checks, n_obj) -> dict:
  rows = np.arange(len(kept))
  got = checks[rows, kept]  # [n, len(CHECKS)], nan where a check does not apply
  line = {"policy": name, "mean_draws": round(float(drawn.mean()), 3)}
  for c, col in zip(CHECKS, got.T):
    line[c] = round(float(np.nanmean(col)), 4)
  for k in (1, 2, 3):
    m = n_obj == k
    if m.any():
      line[f"all_right_{k}obj"] = round(float(got[m, 0].mean()), 4)
      line[f"draws_{k}obj"] = round(float(drawn[m].mean()), 2)
  return line


def plot(path: str, lines: list[dict], title: str) -> None:
  """All-right against mean candidates drawn (the cost): the fixed best-of-K curve as a line,
  each stopping rule as a dot, the oracle's ceiling as a dashed level. A PNG drawn with PIL."""
  from PIL import Image, ImageDraw  # noqa: PLC0415
  w, h, m = 640, 420, 56
  img = Image.new("RGB", (w, h), "white")
  d = ImageDraw.Draw(img)
  xmax = max(l["mean_draws"] for l in lines) * 1.05
  fixed = [l for l in lines if l["policy"].startswith("best of")]
  ys = [l["all_right"] for l in lines]
  ylo, yhi = np.floor(min(ys) * 10) / 10, min(1.0, np.ceil(max(ys) * 10) / 10)

  def xy(x, y):
    return m + (w - 2 * m) * x / xmax, h - m - (h - 2 * m) * (y - ylo) / (yhi - ylo)

  d.rectangle([m, m, w - m, h - m], outline="black")
  for k in range(0, int(xmax) + 1, 2):
    x, _ = xy(k, ylo)
    d.line([x, h - m, x, h - m + 4], fill="black")
    d.text((x - 4, h - m + 8), str(k), fill="black")
  for y in np.arange(ylo, yhi + 1e-9, 0.1):
    _, yy = xy(0, y)
    d.line([m - 4, yy, m, yy], fill="black")
    d.text((8, yy - 6), f"{y:.1f}", fill="black")
  d.text((w // 2 - 90, h - 22), "mean candidates drawn per prompt", fill="black")
  d.text((m, 16), title, fill="black")
  d.text((8, m - 18), "all-right", fill="black")
  d.line([xy(l["mean_draws"], l["all_right"]) for l in fixed], fill=(40, 90, 200), width=2)
  for l in fixed:
    x, y = xy(l["mean_draws"], l["all_right"])
    d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(40, 90, 200))
    d.text((x + 5, y + 4), l["policy"], fill=(40, 90, 200))
  for l in lines:
    if l["policy"].startswith("stop"):
      x, y = xy(l["mean_draws"], l["all_right"])
      d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(200, 60, 40))
    elif l["policy"].startswith("oracle"):
      _, y = xy(0, l["all_right"])
      for x0 in range(m, w - m, 12):
        d.line([x0, y, x0 + 6, y], fill="gray")
      d.text((m + 4, y - 14), l["policy"], fill="gray")
  d.text((w - m - 210, h - m - 16), "red: stopping rules (stop, min, max)", fill=(200, 60, 40))
  tmp = pathlib.Path(path + ".tmp.png")
  img.save(tmp)
  tmp.replace(path)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--checkpoint", default=None, help="weights file (default: shipped)")
  ap.add_argument("--prompts", type=int, default=512)
  ap.add_argument("--skip", type=int, default=384)
  ap.add_argument("--k-all", type=int, default=8, help="candidates every prompt gets")
  ap.add_argument("--k-max", type=int, default=16)
  ap.add_argument("--bound", type=float, default=-2.0,
                  help="prompts whose best log p is below this draw on past --k-all")
  ap.add_argument("--stops", type=float, nargs="+", default=[-4.0, -3.0, -2.0])
  ap.add_argument("--k-mins", type=int, nargs="+", default=[2, 4])
  ap.add_argument("--cache", default="runs/adaptive_best_of.npz")
  ap.add_argument("--log", default="runs/adaptive_best_of.jsonl")
  ap.add_argument("--plot", default=None, help="also draw all-right against cost here (.png)")
  args = ap.parse_args()
  if max(args.stops) > args.bound:
    raise SystemExit(f"--stops {args.stops} must be <= --bound {args.bound} to be exact")
  from sorax.data.captions import parse_terse  # noqa: PLC0415
  from sorax.models import captioner as cap  # noqa: PLC0415
  from sorax.sample import Pipeline  # noqa: PLC0415
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None  # world prompts; the benchmark measures the model and its judge
  d = pipe.cfg.data
  prompts, specs = heldout_prompts(args.prompts, d.height, d.width, d.frames)
  prompts, specs = prompts[args.skip:], specs[args.skip:]
  n, kmax = len(prompts), args.k_max
  asked = [parse_terse(p) for p in prompts]
  n_obj = np.asarray([len(s.objects) for s in specs])
  cache = pathlib.Path(args.cache)
  if cache.is_file():
    z = np.load(cache)
    lp, checks = z["lp"], z["checks"]
    if lp.shape != (n, kmax):
      raise SystemExit(f"{cache} holds {lp.shape}, not [{n}, {kmax}]: another --prompts/--k-max")
  else:
    lp, checks = np.full((n, kmax), np.nan), np.full((n, kmax, len(CHECKS)), np.nan)
  t_all = time.perf_counter()
  for j in range(kmax):
    seen = np.nan_to_num(lp[:, :j], nan=-np.inf).max(1) if j else np.full(n, -np.inf)
    want = np.flatnonzero(np.isnan(lp[:, j]) & ((j < args.k_all) | (seen < args.bound)))
    if not want.size:
      continue
    t0 = time.perf_counter()
    videos = pipe.generate([prompts[i] for i in want], seed=j, best_of=1, batch_size=32,
                           rows=args.skip + want)
    lp[want, j] = cap.score_videos(pipe.captioner, videos, [asked[i].objects for i in want],
                                   walls=[asked[i].wall for i in want])
    for r, i in enumerate(want):
      res = oracle.score_video(videos[r], specs[i])
      checks[i, j] = [np.nan if res[c] is None else float(res[c]) for c in CHECKS]
    tmp = cache.with_name(f".{cache.name}.tmp-{os.getpid()}.npz")
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, lp=lp, checks=checks)
    tmp.replace(cache)
    print(f"candidate {j}: {want.size} prompts in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)
  lines = []
  for k in sorted(k for k in {1, 2, 4, args.k_all} if k <= args.k_all):
    lines.append(summarize(f"best of {k}", *keep(lp, k, None, k), checks, n_obj))
  oracle_best = np.nanargmax(np.nan_to_num(checks[:, :args.k_all, 0], nan=0.0), axis=1)
  lines.append(summarize(f"oracle's best of {args.k_all} (ceiling)", oracle_best,
                         np.full(n, args.k_all), checks, n_obj))
  for k_max in sorted({args.k_all, kmax}):
    for stop in args.stops:
      for k_min in args.k_mins:
        lines.append(summarize(f"stop {stop} min {k_min} max {k_max}",
                               *keep(lp, k_max, stop, k_min), checks, n_obj))
  log = pathlib.Path(args.log)
  log.parent.mkdir(parents=True, exist_ok=True)
  with log.open("a") as f:
    for line in lines:
      line = {"benchmark": "adaptive_best_of", "checkpoint": args.checkpoint or "shipped",
              "prompts": args.prompts, "skip": args.skip, **line,
              "run_s": round(time.perf_counter() - t_all, 1)}
      print(json.dumps(line), flush=True)
      f.write(json.dumps(line) + "\n")
  if args.plot:
    plot(args.plot, lines, f"best of K by the captioner, held-out prompts {args.skip}-"
                           f"{args.prompts - 1} (v16)")


if __name__ == "__main__":
  main()
