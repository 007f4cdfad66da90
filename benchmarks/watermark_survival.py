"""How much of a static luma pattern survives H.264 (and 0.5x + H.264), by the pattern's scale.

    python benchmarks/watermark_survival.py [--sizes 64 128] [--clips 4] [--chips 2 4 8 16]

For each chip size c, a random +-1 field of c x c px chips (smoothed by 0.35 c, RMS 2.8 luma
levels, the watermark's strength) is added to world and textured clips (benchmarks/
watermark_robustness.py's), which are then attacked. The gain is the least-squares scale of
the attacked marked minus the attacked unmarked clip's luma on the pattern (after 0.5x: on the
pattern as 0.5x leaves it), for the I-frame (frame 0) and the mean over the P-frames: 1 means
kept whole, 0 means gone. It says which scales a mark can live at (BUILD_NOTES, "What survives
0.5x + crf 28"). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from watermark_robustness import clips  # noqa: E402  (a sibling benchmark, not a package)

from sorax.safety.attacks import downscale, h264  # noqa: E402
from sorax.safety.watermark import luma  # noqa: E402


def field(rng: np.random.Generator, chip: int, h: int, w: int, rms: float = 2.8) -> np.ndarray:
  f = np.kron(rng.choice([-1.0, 1.0], (-(-h // chip), -(-w // chip))), np.ones((chip, chip)))
  f = ndimage.gaussian_filter(f[:h, :w], 0.35 * chip, mode="wrap")
  return (f / f.std() * rms).astype(np.float32)


def gains(video: np.ndarray, f: np.ndarray, crf: int) -> dict[str, tuple[float, float]]:
  marked = np.clip(np.rint(video + f[None, :, :, None]), 0, 255).astype(np.uint8)
  half = (luma(downscale(marked, 0.5)) - luma(downscale(video, 0.5))).mean(0)
  out = {}
  for name, attack, ref in ((f"crf{crf}", lambda v: h264(v, crf), f),
                            (f"0.5x+crf{crf}", lambda v: h264(downscale(v, 0.5), crf), half)):
    d = luma(attack(marked)) - luma(attack(video))
    ref = ref - ref.mean()
    g = [float(np.sum(dk * ref) / np.sum(ref * ref)) for dk in d]
    out[name] = (g[0], float(np.mean(g[1:])))
  return out


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square clip sides")
  p.add_argument("--clips", type=int, default=4, help="clips per size (half world, half textured)")
  p.add_argument("--chips", type=int, nargs="+", default=[2, 4, 8, 16])
  p.add_argument("--frames", type=int, default=16)
  p.add_argument("--crf", type=int, default=28)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  rng = np.random.default_rng(args.seed)
  acc: dict[tuple, list] = {}
  for size in args.sizes:
    for kind, video in clips(rng, args.clips, size, size, args.frames):
      for c in args.chips:
        for attack, g in gains(video, field(rng, c, size, size), args.crf).items():
          acc.setdefault((size, kind, attack, c), []).append(g)
  rows = [{"size": s, "content": k, "attack": a, "chip": c,
           "i_frame": round(float(np.mean([g[0] for g in v])), 3),
           "p_frames": round(float(np.mean([g[1] for g in v])), 3)}
          for (s, k, a, c), v in sorted(acc.items())]
  print(json.dumps({"benchmark": "watermark_survival", "clips": args.clips,
                    "frames": args.frames, "results": rows}))


if __name__ == "__main__":
  main()
