"""Why straight tracks fail: a taxonomy of the oracle's wrong left/right/up/down answers.

For every object of the held-out prompts asked to move left, right, up or down whose motion
the oracle reads wrong, the object's box centre per frame is classified by its first fault:
  reversed      it moves steadily the other way;
  copies        a second blob of the object's colour (>= 2 px) in some frame, no wall in the
                scene (a wall may cut one object in two);
  jump@first    a jump (> 3 px off the expected step, either axis) between frame 0 and 1: the
                causal fold encodes frame 0 alone, so that is a latent-frame boundary too;
  jump@latent   the first jump falls between two latent frames (frames 2k and 2k + 1);
  jump@within   the first jump falls inside a latent frame (a frame pair);
  drift         no jump, but the cross axis wanders more than the oracle's 2.5 px;
  other         speed out of range, missing, or a step back under 3 px.
Centres are those of the largest blob of the object's colour. Reads candidates saved by rerank_probe.py (--videos, [n, k, T, H, W, 3]), so it costs no
sampling. Prints one JSON line.

    python benchmarks/track_failures.py --videos runs/rerank_v14_videos.npy [--prompts 128]
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from speedrun import heldout_prompts  # noqa: E402  (a sibling benchmark, not a package)

from sorax.data import oracle, world  # noqa: E402

STRAIGHT = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}  # axis, sign
JUMP_PX = 3.0


def box_centres(video: np.ndarray, color: str) -> tuple[np.ndarray, bool]:
  """-> ([T, 2] (x, y) box centre of the largest blob of `color` per frame, NaN where absent;
  whether some frame holds a second blob of >= 2 pixels)."""
  near = np.all(np.abs(video.astype(np.int32) - np.array(world.OBJECT_COLORS[color])) < 40, -1)
  out = np.full((len(video), 2), np.nan)
  copies = False
  for f, m in enumerate(near):
    labels, count = ndimage.label(m, structure=np.ones((3, 3)))
    if not count:
      continue
    sizes = np.bincount(labels.ravel())[1:]
    copies |= bool(np.sum(sizes >= 2) >= 2)
    ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
    out[f] = ((xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2)
  return out, copies


def fault(c: np.ndarray, motion: str, step_px: float, copies: bool = False) -> str:
  """The first fault of a wrong straight track (see the module docstring)."""
  axis, sign = STRAIGHT[motion]
  seen = np.nonzero(~np.isnan(c[:, 0]))[0]
  if len(seen) < 2:
    return "other"
  along, perp = c[seen, axis] * sign, c[seen, 1 - axis]
  if along[-1] - along[0] < -JUMP_PX and np.all(np.diff(along) <= JUMP_PX):
    return "reversed"
  if copies:
    return "copies"
  for a, b, da, dp in zip(seen[:-1], seen[1:], np.diff(along), np.diff(perp)):
    gap = b - a
    if abs(da - step_px * gap) > JUMP_PX * gap or abs(dp) > JUMP_PX * gap:
      if a == 0:
        return "jump@first"
      return "jump@latent" if a % 2 == 0 else "jump@within"
  if np.ptp(perp) > 2.5:
    return "drift"
  return "other"


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--videos", required=True)
  ap.add_argument("--prompts", type=int, default=128)
  args = ap.parse_args()
  videos = np.load(args.videos)[:args.prompts]
  n, k, frames, h, w = videos.shape[:5]
  _, specs = heldout_prompts(n, h, w, frames)
  step_px = world.SPEED * w / world.FPS  # the world's straight-line speed, px a frame
  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for i, spec in enumerate(specs):
    for j in range(k):
      explained = oracle.explain_video(videos[i, j], spec)["objects"]
      for o, r in zip(spec.objects, explained):
        if o.motion not in STRAIGHT:
          continue
        key = f"objects={len(spec.objects)}"
        counts[key]["n"] += 1
        if r["motion_ok"]:
          counts[key]["right"] += 1
        else:
          centres, copies = box_centres(videos[i, j], o.color)
          counts[key][fault(centres, o.motion, step_px, copies and not spec.wall)] += 1
  line = {"benchmark": "track_failures", "videos": args.videos, "prompts": n, "k": k,
          "step_px": step_px}
  total = collections.Counter()
  for key in sorted(counts):
    total.update(counts[key])
    line[key] = dict(counts[key])
  line["all"] = dict(total)
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()
