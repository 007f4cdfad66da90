"""The world's scorer: does a video show what its prompt asked for? (WORLD.md, "What a scorer
checks" and "Precise rules")

Judges only what a prompt states (colours, shapes, sizes, motions, background, wall), never the
start positions: at scoring time the spec usually comes from a terse caption (start=None).

Pipeline, numpy only (steps 1, 2 and the shape/size measurement of 4 live in sorax.data.measure;
the decisions are made here):
  1. Every pixel -> nearest palette colour (8 object colours, 4 backgrounds, wall gray).
  2. Per object colour and frame, a blob: the colour's mask opened 3x3 (drops the thin rims and
     specks H.264 chroma bleed leaves at edges) plus the pixels attached to it; it is present
     when big enough. Around each asked object, the blob is re-measured on luma, which H.264 keeps
     at full resolution, to get back tips whose colour bled away. -> area, bounding box, centre.
  3. Frames where the object is seen whole: not touching another object, not cut by the canvas
     edge or the drawn wall, and fitting some shape with IoU >= 0.8.
  4. Shape: IoU with the four shapes drawn by WORLD.md's pixel-centre rule on the object's box,
     over the whole frames. Size: box extent vs sqrt(0.16 * 0.32) * min(H, W) (at frame 0 for
     growing/shrinking). Motion: classify_motion on the box centre and extent over time.
  5. Permanence (wall clips): every visit of an object to a side of the wall shows the same shape
     and size; one last seen heading behind the wall that never comes out, although the clip
     lasts long enough for it to cross, fails.
  6. No extra object: no unasked object colour is present in max(2, 10% of T) frames or more.

Garbage (noise, blank or constant frames, odd sizes) scores False and never crashes; a video of
the wrong dtype or shape raises one ValueError.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from sorax.data import world
from sorax.data.measure import (
  _BG_NAMES,
  _LUMA,
  _N_OBJ,
  _OBJ_NAMES,
  _PALETTE,
  _WALL,
  _Blobs,
  _dilate,
  _labels,
  _shape_ious,
  _shape_seen,
  _size_word,
)

CHECKS = ("color", "shape", "size", "motion", "background", "wall", "permanence", "no_extra",
          "all_right")

_MIN_BLOB = 0.25 * 0.5 * 0.16 ** 2  # a blob: >= a quarter of the smallest object, in min(H, W)^2
_WALL_GRAY = 0.5  # wall drawn when at least this part of the band is gray
_BG_SHARE = 0.8  # the asked background holds this part of all background-coloured pixels
_WHOLE_IOU = 0.8  # a frame whose best shape fits worse shows a cut object


def _need_frames(frames: int) -> int:
  """Frames a colour must show a solid blob in to count as present: max(2, 10% of T), <= T."""
  return min(frames, max(2, math.ceil(0.1 * frames - 1e-9)))


# ----------------------------------------------------------------------------------------------
# Motion
# ----------------------------------------------------------------------------------------------



def _lsq_slope(t: np.ndarray, v: np.ndarray) -> float:
  tc = t - t.mean()
  den = (tc * tc).sum()
  return float((tc * (v - v.mean())).sum() / den) if den > 0 else 0.0


def _rms_fit(basis: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, float]:
  """Least squares v ~ basis @ coef -> (coef, RMS residual)."""
  coef = np.linalg.lstsq(basis, v, rcond=None)[0]
  return coef, float(np.sqrt(np.mean((basis @ coef - v) ** 2)))


def classify_motion(t: np.ndarray, x: np.ndarray, y: np.ndarray, e: np.ndarray, frames: int,
                    height: int, width: int) -> str | None:
  """One of world.MOTIONS, or None (not measurable, or like none of them), from a trajectory.

  Speeds are judged loosely (0.2-0.8 canvas/s where the world says 0.5 or 0.4): the check is
  for the motion a prompt names, not for its exact speed.

  Args:
    t: seconds since the clip's first frame [F], increasing, F >= 2 frames where the object is
      seen whole.
    x, y: box centre [F], pixels.  e: box extent [F], pixels.
    frames, height, width: the clip's T, H, W.
  """
  if len(t) < 2 or t[-1] - t[0] <= 0:
    return None
  xf, yf = x / width, y / height
  # Box centres move by whole or half pixels, and compression shifts a box edge by a pixel.
  tol_x, tol_y = max(0.04, 2.5 / width), max(0.04, 2.5 / height)
  still_x, still_y = np.ptp(xf) <= tol_x, np.ptp(yf) <= tol_y
  if still_x and still_y:
    # Extent change over the whole clip, as a fraction of growing's 0.16 * min(H, W).
    duration = max(frames - 1, 1) / world.FPS
    growth = _lsq_slope(t, e) * duration / (0.16 * min(height, width))
    if abs(growth) >= 0.5:
      return "growing" if growth > 0 else "shrinking"
    return "static"
  vx, vy = _lsq_slope(t, xf), _lsq_slope(t, yf)  # canvas fractions per second
  steps_x, steps_y = np.diff(xf), np.diff(yf)
  if still_y:
    monotone = np.all(steps_x * np.sign(vx) >= -tol_x / 2)
    if monotone and 0.2 <= abs(vx) <= 0.8:
      return "right" if vx > 0 else "left"
    return None
  if still_x:
    # Falling: down then back up (a bounce), or a descent that a free fall from rest at t = 0
    # (y = a + c t^2) explains clearly better than a constant speed (y = a + b t).
    peak = np.maximum.accumulate(yf)  # lowest point so far (y grows downward)
    if np.any((peak - yf[0] > tol_y) & (peak - yf > tol_y)):
      return "falling"
    for n in range(3, len(t) + 1):  # any first stretch of >= 3 frames
      td, yd = t[:n], y[:n]
      _, res_line = _rms_fit(np.stack([np.ones(n), td], 1), yd)
      (_, c), res_fall = _rms_fit(np.stack([np.ones(n), td * td], 1), yd)
      if c >= 0.3 * height and res_fall <= 1.0 and res_line >= max(0.5, 2 * res_fall):
        return "falling"
    monotone = np.all(steps_y * np.sign(vy) >= -tol_y / 2)
    if monotone and 0.2 <= abs(vy) <= 0.8:
      return "down" if vy > 0 else "up"
    return None
  # Both axes move: bouncing (0.4 canvas/s per axis, reflected at the edges).
  dt = np.diff(t)
  sx, sy = np.median(np.abs(steps_x) / dt), np.median(np.abs(steps_y) / dt)
  if 0.15 <= sx <= 0.8 and 0.15 <= sy <= 0.8:
    return "bouncing"
  return None


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def _check_inputs(video: Any, spec: Any) -> tuple[np.ndarray, world.SceneSpec]:
  if not isinstance(video, np.ndarray):
    raise ValueError(f"video must be a numpy uint8 array [T, H, W, 3], got {type(video).__name__}")
  if video.dtype != np.uint8:
    raise ValueError(f"video must have dtype uint8, got {video.dtype}")
  if video.ndim != 4 or video.shape[-1] != 3 or min(video.shape[:3]) < 1:
    raise ValueError(f"video must have shape [T, H, W, 3] with T, H, W >= 1, got {video.shape}")
  return video, as_spec(spec)


def as_spec(spec: Any) -> world.SceneSpec:
  """A SceneSpec, its JSON dict or a terse caption -> the SceneSpec."""
  if isinstance(spec, str):
    return world.parse_terse(spec)
  if isinstance(spec, dict):
    return world.SceneSpec.from_json(spec)
  if not isinstance(spec, world.SceneSpec):
    raise ValueError(f"spec must be a SceneSpec, a spec JSON dict or a terse caption, "
                     f"got {type(spec).__name__}")
  return spec


def explain_video(video: np.ndarray, spec: world.SceneSpec | dict | str) -> dict[str, Any]:
  """Everything score_video measures: {"checks": {...}, "objects": [{color, shape, size,
  motion, permanence, frames_seen, ...} per spec object], "background", "wall", "extra"}."""
  video, spec = _check_inputs(video, spec)
  T, H, W, _ = video.shape
  m = min(H, W)
  labels = _labels(video)
  need = _need_frames(T)
  min_area = max(2.0, _MIN_BLOB * m * m)

  # Background and wall.
  band = world.wall_columns(W)
  gray_band = (labels[:, :, band] == _WALL).mean((1, 2)) if band.any() else np.zeros(T)
  wall_frames = gray_band >= _WALL_GRAY  # [T]
  wall_seen = bool(gray_band.mean() >= _WALL_GRAY)
  bg_counts = np.bincount(labels.ravel(), minlength=len(_PALETTE))[_N_OBJ:_WALL]
  bg_total = bg_counts.sum()
  asked_bg = _BG_NAMES.index(spec.background)
  background_ok = bool(bg_total >= 0.25 * labels.size
                       and bg_counts[asked_bg] >= _BG_SHARE * bg_total)

  blobs = {}
  for i, name in enumerate(_OBJ_NAMES):
    mask = labels == i
    if mask.any():
      blobs[name] = _Blobs(mask, min_area, world.size_px("small", H, W))
  all_cores = np.zeros(labels.shape, bool)
  for b in blobs.values():
    all_cores |= b.core

  asked = {o.color for o in spec.objects}
  extra = sorted(c for c, b in blobs.items() if c not in asked and b.present.sum() >= need)

  # Shapes are measured on luma near each object's colour blob (see _Blobs.refine).
  luma = video.astype(np.float32) @ _LUMA
  bg_luma = np.full(T, float(_PALETTE[_N_OBJ + int(bg_counts.argmax())] @ _LUMA))
  wall_mask = band[None, None, :] & wall_frames[:, None, None]
  for o in spec.objects:
    b = blobs.get(o.color)
    if b is not None:
      obj_luma = float(_PALETTE[_OBJ_NAMES.index(o.color)] @ _LUMA)
      b.refine(luma, obj_luma, bg_luma, (all_cores & ~b.core) | wall_mask)

  band_idx = np.flatnonzero(band)
  b0, b1 = (band_idx[0], band_idx[-1]) if len(band_idx) else (W, -1)
  objects = []
  for o in spec.objects:
    objects.append(_score_object(o, blobs.get(o.color), all_cores, wall_frames, (b0, b1),
                                 need, spec.wall, T, H, W))

  def agg(key):
    return all(r[key] for r in objects)

  perms = [r["permanence"] for r in objects if r["permanence"] is not None]
  checks = {
      "color": agg("color"), "shape": agg("shape_ok"), "size": agg("size_ok"),
      "motion": agg("motion_ok"), "background": background_ok,
      "wall": wall_seen == spec.wall, "permanence": all(perms) if perms else None,
      "no_extra": not extra}
  checks["all_right"] = all(v for v in checks.values() if v is not None)
  return {"checks": checks, "objects": objects, "background": _BG_NAMES[int(bg_counts.argmax())],
          "wall": wall_seen, "extra": extra}


def _cut(b: _Blobs, wall_side: np.ndarray, near_other: np.ndarray) -> np.ndarray:
  """bool [T]: frames where the canvas edge or the drawn wall cuts the object.

  Touching is not enough (an object may sit flush with the edge or right next to the band): the
  box must be clearly narrower across the edge than along it (every shape's box is square), or
  the area clearly below the object's usual area (small shapes vary by ~25% with pixel phase).
  """
  H, W = b.region.shape[1:]
  h, w = b.r1 - b.r0 + 1, b.c1 - b.c0 + 1
  lr = b.present & ((b.c0 == 0) | (b.c1 == W - 1) | wall_side)
  tb = b.present & ((b.r0 == 0) | (b.r1 == H - 1))
  free = b.present & ~lr & ~tb & ~near_other
  ref = np.median(b.area[free]) if free.any() else b.area[b.present].max(initial=0)
  return (lr | tb) & ((lr & (w < h - 1.5)) | (tb & (h < w - 1.5)) | (b.area < 0.65 * ref))


def _score_object(o: world.ObjectSpec, b: _Blobs | None, all_cores: np.ndarray,
                  wall_frames: np.ndarray, band: tuple[int, int], need: int, wall_asked: bool,
                  T: int, H: int, W: int) -> dict[str, Any]:
  m = min(H, W)
  res = {"color_name": o.color, "color": False, "shape": None, "size": None, "motion": None,
         "shape_ok": False, "size_ok": False, "motion_ok": False, "permanence": None,
         "frames_seen": 0}
  if b is None:
    return res
  res["frames_seen"] = int(b.present.sum())
  res["color"] = bool(res["frames_seen"] >= need)
  if not res["color"]:
    return res
  b0, b1 = band
  wall_side = wall_frames & b.present & (b.c1 >= b0 - 1) & (b.c0 <= b1 + 1)
  near_other = (_dilate(b.region) & all_cores & ~b.core).any((1, 2))
  cut = _cut(b, wall_side, near_other)
  m_px = [world.size_px(z, H, W) for z in world.SIZES]

  def prior(frames):  # canonical size of each frame, as the spec implies
    if o.motion in ("growing", "shrinking"):
      return np.interp(frames, [0, max(T - 1, 1)], m_px if o.motion == "growing" else m_px[::-1])
    return np.full(len(frames), world.size_px(o.size, H, W))

  # Frames where the object is seen whole: not touching another object, not cut by the edge or
  # the wall, and fitting some shape well. Fewer than two such frames: relax.
  tiers = (~near_other & ~cut, ~cut, np.ones(T, bool))
  for tier in tiers:
    use = np.flatnonzero(b.present & tier)
    ious = _shape_ious(b, use, prior(use))
    whole = ious.max(1, initial=0) >= _WHOLE_IOU
    if whole.sum() >= 2:
      use, ious = use[whole], ious[whole]
      break
  res["shape"] = _shape_seen(ious, o.shape)
  res["shape_ok"] = res["shape"] == o.shape

  ext = b.extent[use].astype(float)
  if o.motion in ("growing", "shrinking") and len(use) >= 2:
    start_extent = float(np.polyval(np.polyfit(use.astype(float), ext, 1), 0.0))
  else:
    start_extent = float(np.median(ext))
  res["size"] = _size_word(start_extent, m)
  res["size_ok"] = res["size"] == o.size

  if T == 1:
    res["motion"] = "static" if o.motion == "static" else None
  else:
    res["motion"] = classify_motion(use / world.FPS, b.cx[use], b.cy[use], ext, T, H, W)
  res["motion_ok"] = res["motion"] == o.motion

  if wall_asked:
    res["permanence"] = _permanence(o, b, ious, use, band, T, W, m)
  return res


def _permanence(o: world.ObjectSpec, b: _Blobs, ious: np.ndarray, use: np.ndarray,
                band: tuple[int, int], T: int, W: int, m: int) -> bool | None:
  """None when the object does not pass behind the wall; else whether it came back the same.

  Seen on both sides of the band: True iff its shape and size agree on every visit to a side
  (a bouncing object may cross several times). Last seen
  heading into the wall (or vanished just before it), then never again although the clip went on
  long enough to cross: False.
  """
  b0, b1 = band
  side = np.zeros(T, int)  # -1 left of the band, +1 right of it, 0 touching it or unseen
  side[b.present & (b.c1 < b0)] = -1
  side[b.present & (b.c0 > b1)] = 1
  on_side = np.flatnonzero(side)
  if len(on_side) and (side[on_side] != side[on_side[0]]).any():
    # Visits: runs of frames on one side. Each visit's shape and size must match the others.
    visit = np.zeros(T, int)
    visit[on_side] = np.cumsum(np.r_[0, np.diff(side[on_side]) != 0])
    verdicts = set()
    for v in range(visit[on_side[-1]] + 1):
      pick = (side[use] != 0) & (visit[use] == v) & ~b.edge[use]  # the edge may cut it
      if pick.any():
        verdicts.add((_shape_seen(ious[pick], o.shape),
                      _size_word(float(np.median(b.extent[use[pick]])), m)))
    return len(verdicts) <= 1
  # Never seen on both sides: did it go behind the wall and stay lost? Only objects that move
  # sideways (left, right, bouncing) can pass behind it.
  speed = {"left": world.SPEED, "right": world.SPEED, "bouncing": world.BOUNCE_SPEED}.get(o.motion)
  seen = np.flatnonzero(b.present)
  last = int(seen[-1])
  if speed is None or last == T - 1:
    return None
  step = speed * W / world.FPS  # pixels per frame
  if o.motion == "bouncing":
    if len(seen) < 2:
      return None
    heading = np.sign(b.cx[last] - b.cx[seen[-2]])
  else:
    heading = 1 if o.motion == "right" else -1
  lo, hi = b.c0[last] + heading * step, b.c1[last] + heading * step + 1  # box at last + 1
  if hi <= 0 or lo >= W:
    return None  # left the canvas
  toward = b.c1[last] < b0 and heading > 0 or b.c0[last] > b1 and heading < 0
  behind = hi > b0 and lo <= b1 + 1
  if not (toward or behind):
    return None
  # It went (or was about to go) behind the wall and never came out: a failure if the clip
  # lasted long enough for it to cross.
  cross_frames = ((b1 - b0 + 1) + (b.c1[last] - b.c0[last] + 1)) / step
  if T - 1 - last < cross_frames + 2:
    return None
  return False


def score_video(video: np.ndarray, spec: world.SceneSpec | dict | str) -> dict[str, bool | None]:
  """Scores one video against the spec (or terse caption / spec JSON) that asked for it.

  Args:
    video: uint8 [T, H, W, 3], any T, H, W >= 1.
    spec: what was asked; start positions are never used.

  Returns:
    {check: bool | None} for CHECKS. Per-object checks (color, shape, size, motion) are True iff
    true for every object; permanence is None when no object passes behind the wall; all_right is
    True iff every applicable check is.

  Raises:
    ValueError: video not a uint8 [T, H, W, 3] array, or an invalid spec.
  """
  return explain_video(video, spec)["checks"]


def score_videos(videos: Iterable[np.ndarray], specs: Iterable[Any]) -> dict[str, float]:
  """Rates of each check over pairs (video, spec); permanence over the clips where it applies
  (nan if none). Adds "n" (clips) and "permanence_n" (clips where permanence applies)."""
  videos, specs = list(videos), list(specs)
  if len(videos) != len(specs):
    raise ValueError(f"got {len(videos)} videos but {len(specs)} specs")
  results = [score_video(v, s) for v, s in zip(videos, specs)]
  out: dict[str, float] = {}
  for key in CHECKS:
    vals = [r[key] for r in results if r[key] is not None]
    out[key] = float(np.mean(vals)) if vals else float("nan")
  out["n"] = float(len(results))
  out["permanence_n"] = float(sum(r["permanence"] is not None for r in results))
  return out
