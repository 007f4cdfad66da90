"""Watermark robustness: bit accuracy and detection rate per attack, false positives, PSNR.

    python benchmarks/watermark_robustness.py [--sizes 64x64x16 128x128x16] [--clips 24]
        [--negatives 3000] [--seed 0] [--follow-motion] [--tile 64 --chip 4 --smooth 1.4]

Marked videos are world clips (what sorax generates) and textured clips (moving smooth noise, closer to camera
footage than flat colours), each with a random 48-bit payload. Negatives are unmarked clips
of both kinds at every size, half of them through H.264 (crf 23), so the false-positive rate
is measured on the same detector settings the attacks are. Prints one JSON line; progress on
stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from scipy import ndimage


def textured_clip(rng: np.random.Generator, h: int, w: int, t: int) -> np.ndarray:
  """A camera-like clip: smooth noise at two scales, panning, plus sensor noise."""
  big = rng.normal(size=(h + 4 * t + 8, w + 4 * t + 8, 3))
  base = ndimage.gaussian_filter(big, (6, 6, 0)) * 400 + ndimage.gaussian_filter(big, (1.5, 1.5, 0)) * 60
  dy, dx = rng.integers(-2, 3, 2)
  frames = []
  for k in range(t):
    y, x = 2 * t + 4 + dy * k, 2 * t + 4 + dx * k
    frames.append(base[y:y + h, x:x + w] + 128 + rng.normal(0, 2, (h, w, 3)))
  return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def clips(rng, n: int, h: int, w: int, t: int):
  from sorax.data import world
  for i in range(n):
    if i % 2 == 0:
      yield "world", world.render(world.random_spec(rng, h, w, t), h, w, t)
    else:
      yield "textured", textured_clip(rng, h, w, t)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", nargs="+", default=["64x64x16", "128x128x16"],
                 help="HxWxT of the marked clips")
  p.add_argument("--clips", type=int, default=24, help="marked clips per size")
  p.add_argument("--median", type=int, help="override the detector's median size")
  p.add_argument("--negatives", type=int, default=3000, help="unmarked clips in all")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--tile", type=int, help="override the tile (px); with --chip, e.g. 64 and 4")
  p.add_argument("--chip", type=int, help="override the chip (px)")
  p.add_argument("--smooth", type=float, help="override the chips' Gaussian rounding (px)")
  p.add_argument("--follow-motion", action="store_true",
                 help="the mark moves with the content's pan (WatermarkConfig.follow_motion)")
  args = p.parse_args()

  from sorax.data import world
  from sorax.safety.attacks import ATTACKS, h264
  from sorax.safety.watermark import Watermark, WatermarkConfig, psnr

  overrides = {"follow_motion": args.follow_motion}
  for name in ("median", "tile", "chip", "smooth"):
    if getattr(args, name):
      overrides[name] = getattr(args, name)
  mark = Watermark(WatermarkConfig(**overrides))
  rng = np.random.default_rng(args.seed)
  sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes]
  t0 = time.perf_counter()
  results, psnrs, det_times = [], [], []
  for h, w, t in sizes:
    per = {(kind, name): {"bits": [], "det": [], "exact": [], "score": []}
           for kind in ("world", "textured") for name in ATTACKS}
    for kind, video in clips(rng, args.clips, h, w, t):
      bits = rng.integers(0, 2, mark.cfg.payload_bits).astype(np.uint8)
      marked = mark.embed(video, bits)
      psnrs.append(psnr(video, marked))
      for name, attack in ATTACKS.items():
        s = time.perf_counter()
        d = mark.detect(attack(marked, rng))
        det_times.append(time.perf_counter() - s)
        got = np.array([int(c) for c in d["bits"]], np.uint8)
        r = per[kind, name]
        r["bits"].append(float(np.mean(got == bits)))
        r["det"].append(d["present"])
        r["exact"].append(bool(d["present"] and d["payload_valid"] and np.array_equal(got, bits)))
        r["score"].append(d["score"])
    for (kind, name), r in per.items():
      results.append({"size": [h, w, t], "content": kind, "attack": name,
                      "bit_accuracy": round(float(np.mean(r["bits"])), 4),
                      "detection_rate": round(float(np.mean(r["det"])), 4),
                      "payload_exact_rate": round(float(np.mean(r["exact"])), 4),
                      "score_median": round(float(np.median(r["score"])), 2),
                      "score_min": round(float(np.min(r["score"])), 2)})
      print(json.dumps(results[-1]), file=sys.stderr, flush=True)

  neg_sizes = sizes + [(32, 32, 9), (48, 80, 24)]
  scores, false = [], 0
  for i in range(args.negatives):
    h, w, t = neg_sizes[i % len(neg_sizes)]
    if i % 2 == 0:
      video = world.render(world.random_spec(rng, h, w, t), h, w, t)
    else:
      video = textured_clip(rng, h, w, t)
    if (i // 2) % 2:
      video = h264(video, 23)
    d = mark.detect(video)
    scores.append(d["score"])
    false += d["present"]
    if (i + 1) % 500 == 0:
      print(f"negatives {i + 1}/{args.negatives}: {false} false positives, max score "
            f"{max(scores):.2f}", file=sys.stderr, flush=True)
  print(json.dumps({
      "benchmark": "watermark_robustness", "threshold": mark.cfg.threshold,
      "follow_motion": mark.cfg.follow_motion, "tile": mark.cfg.tile, "chip": mark.cfg.chip,
      "payload_bits": mark.cfg.payload_bits, "strength": mark.cfg.strength,
      "psnr_mean": round(float(np.mean(psnrs)), 2), "psnr_min": round(float(np.min(psnrs)), 2),
      "false_positive_rate": false / max(1, args.negatives), "negatives": args.negatives,
      "negative_score_max": round(float(np.max(scores)), 2),
      "negative_score_p999": round(float(np.quantile(scores, 0.999)), 2),
      "detect_ms_median": round(1e3 * float(np.median(det_times)), 1),
      "seconds": round(time.perf_counter() - t0, 1), "results": results}))


if __name__ == "__main__":
  main()
