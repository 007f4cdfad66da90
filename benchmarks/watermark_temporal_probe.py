"""A temporal content filter for the watermark detector, probed (issue 12 part 3; not the default).

    python benchmarks/watermark_temporal_probe.py [--clips 4] [--tile 64 --chip 8 --ecc none
        --median 17 --highpass 16 --smooth 2] [--far 0] [--kinds textured world]

The shipped detector removes the content with a spatial median filter, which keeps flat world
clips' edges but leaves camera-like texture in the residual at the mark's own scale. On a
panning clip the content can instead be removed in time: every frame minus the median of the
other frames moved onto it by the content's pan (integer phase correlation, kept where it
halves the squared error). The content cancels, and a static mark does not (it moves against
the content), so the residual is the mark plus codec noise. Static clips (no pan found) keep the
spatial filter. The embedder is unchanged; `--tile/--chip/...` pick the mark both detectors read
(a coarse mark lives through H.264's quantization better: benchmarks/watermark_survival.py).

Prints one JSON line per (size, content, attack): the pilot scores of both detectors (threshold
6.0) and their mean payload bit accuracy, then one line of unmarked clips' scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
from scipy import ndimage

from sorax.data import world
from sorax.safety.attacks import ATTACKS, h264
from sorax.safety.motion import phase_peak
from sorax.safety.watermark import Watermark, WatermarkConfig

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from watermark_robustness import textured_clip  # noqa: E402

ATTACK_NAMES = ("none", "h264_crf23", "h264_crf28", "downscale_0.5", "crop_10",
                "downscale_0.5+crf28")


def pan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """float [2] d with b(p) ~ a(p - d) for luma frames [H, W]: the phase-correlation peak, kept
  only if moving `a` by it halves the squared error against `b` (away from the borders)."""
  d = phase_peak(a, b).astype(float)
  if not d.any():
    return d
  m = max(1, min(a.shape) // 8)
  moved = ndimage.shift(a, d, order=0, mode="nearest")
  e1 = np.mean((moved - b)[m:-m, m:-m] ** 2)
  e0 = np.mean((a - b)[m:-m, m:-m] ** 2)
  return d if e1 < 0.5 * e0 else np.zeros(2)


class TemporalWatermark(Watermark):
  """`Watermark` whose detector removes panning content in time (the module docstring)."""

  def __init__(self, cfg: WatermarkConfig | None = None, far: float = 0.0):
    super().__init__(cfg)
    self.far = far  # use only frames whose content moved at least this far (px)

  def residual(self, video):
    y = self.luma_frames(video)
    frames = len(y)
    if frames < 3:
      return super().residual(video)
    step = np.array([pan(y[k], y[k + 1]) for k in range(frames - 1)])
    if np.median(np.abs(step).max(axis=1)) < 0.5:  # no pan: the spatial filter
      return super().residual(video)
    at = np.concatenate([np.zeros((1, 2)), np.cumsum(step, axis=0)])  # [T, 2] content offset
    r, valid = np.zeros_like(y), np.zeros_like(y)
    for k in range(frames):
      dist = np.abs(at - at[k]).max(axis=1)
      others = [j for j in range(frames) if j != k and dist[j] >= self.far] or \
               [j for j in range(frames) if j != k]
      moved = np.stack([ndimage.shift(y[j], at[k] - at[j], order=0, mode="constant",
                                      cval=np.nan) for j in others])
      ok = np.isfinite(moved).sum(axis=0) >= 2
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: masked below
        content = np.nanmedian(moved, axis=0)
      r[k] = np.where(ok, y[k] - np.nan_to_num(content), 0.0)
      valid[k] = ok
    s = 1.4826 * np.median(np.abs(r[valid > 0])) + 0.5
    # A tiny weight where no frame covers a pixel keeps the fold's weight sums above 0.
    return (*self.weighted(np.clip(r, -3 * s, 3 * s), valid + 1e-6), np.zeros((frames, 2)))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--clips", type=int, default=4, help="marked clips per size and content")
  p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
  p.add_argument("--kinds", nargs="+", default=["textured", "world"])
  p.add_argument("--far", type=float, default=0.0)
  p.add_argument("--negatives", type=int, default=16)
  for name, typ in (("tile", int), ("chip", int), ("median", int), ("highpass", float),
                    ("smooth", float), ("ecc", str), ("strength", float)):
    p.add_argument(f"--{name}", type=typ)
  args = p.parse_args()
  kw = {k: getattr(args, k) for k in ("tile", "chip", "median", "highpass", "smooth", "ecc",
                                      "strength") if getattr(args, k) is not None}
  cfg = WatermarkConfig(**kw)
  base, temporal = Watermark(cfg), TemporalWatermark(cfg, far=args.far)
  rng = np.random.default_rng(0)
  for h in args.sizes:
    for kind in args.kinds:
      rows = {a: {"base": [], "temporal": [], "base_bits": [], "temporal_bits": []}
              for a in ATTACK_NAMES}
      for i in range(args.clips):
        video = (textured_clip(rng, h, h, 16) if kind == "textured"
                 else world.render(world.random_spec(rng, h, h, 16), h, h, 16))
        bits = rng.integers(0, 2, cfg.payload_bits).astype(np.uint8)
        marked = base.embed(video, bits)
        for a in ATTACK_NAMES:
          attacked = ATTACKS[a](marked, np.random.default_rng(i))
          for name, det in (("base", base), ("temporal", temporal)):
            d = det.detect(attacked)
            got = np.array([int(c) for c in d["bits"]], np.uint8)
            rows[a][name].append(round(d["score"], 1))
            rows[a][name + "_bits"].append(float(np.mean(got == bits)))
      for a, r in rows.items():
        print(json.dumps({
            "size": h, "content": kind, "attack": a, "config": kw, "far": args.far,
            "base_scores": r["base"], "temporal_scores": r["temporal"],
            "base_detected": float(np.mean(np.array(r["base"]) >= cfg.threshold)),
            "temporal_detected": float(np.mean(np.array(r["temporal"]) >= cfg.threshold)),
            "base_bits": round(float(np.mean(r["base_bits"])), 3),
            "temporal_bits": round(float(np.mean(r["temporal_bits"])), 3)}), flush=True)
  scores = []
  for i in range(args.negatives):
    h = args.sizes[i % len(args.sizes)]
    video = (textured_clip(rng, h, h, 16) if i % 2 == 0
             else world.render(world.random_spec(rng, h, h, 16), h, h, 16))
    if (i // 2) % 2:
      video = h264(video, 23)
    scores.append(round(temporal.detect(video)["score"], 2))
  print(json.dumps({"benchmark": "watermark_temporal_probe", "negatives": len(scores),
                    "negative_scores_max": max(scores) if scores else None,
                    "negative_scores": scores}))


if __name__ == "__main__":
  main()
