"""The world's scorer: does a video show what its prompt asked for? (WORLD.md, "What a scorer
checks" and "Precise rules")

Judges only what a prompt states (colours, shapes, sizes, motions, background, wall), never the
start positions: at scoring time the spec usually comes from a terse caption (start=None).

Pipeline, numpy only:
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

import functools
import math
from typing import Any, Iterable

import numpy as np

from sorax.data import world

CHECKS = ("color", "shape", "size", "motion", "background", "wall", "permanence", "no_extra",
          "all_right")

_OBJ_NAMES = tuple(world.OBJECT_COLORS)
_BG_NAMES = tuple(world.BACKGROUNDS)
_PALETTE = np.array(list(world.OBJECT_COLORS.values()) + list(world.BACKGROUNDS.values())
                    + [world.WALL_COLOR], np.int32)  # [13, 3]
_N_OBJ = len(_OBJ_NAMES)
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # BT.709, what H.264 keeps sharp
_WALL = len(_PALETTE) - 1

_MIN_BLOB = 0.25 * 0.5 * 0.16 ** 2  # a blob: >= a quarter of the smallest object, in min(H, W)^2
_WALL_GRAY = 0.5  # wall drawn when at least this part of the band is gray
_BG_SHARE = 0.8  # the asked background holds this part of all background-coloured pixels
_SIZE_SPLIT = math.sqrt(0.16 * 0.32)  # WORLD.md size check, fraction of min(H, W)
_MIN_IOU = 0.55  # below this an object matches no shape
_WHOLE_IOU = 0.8  # a frame whose best shape fits worse shows a cut object
_IOU_TIE = 0.03  # shapes whose IoUs differ by less explain a frame equally well


def _need_frames(frames: int) -> int:
  """Frames a colour must show a solid blob in to count as present: max(2, 10% of T), <= T."""
  return min(frames, max(2, math.ceil(0.1 * frames - 1e-9)))


# ----------------------------------------------------------------------------------------------
# Pixels -> colours -> per-frame blobs
# ----------------------------------------------------------------------------------------------


def _nearest(rgb: np.ndarray) -> np.ndarray:
  """Exact nearest palette index of int/uint8 colours [N, 3] -> uint8 [N].

  argmin |v - p|^2 = argmin (|p|^2 - 2 v.p): exact in float32 (integers < 2^24); ties go to the
  lower index (objects, then backgrounds, then the wall).
  """
  w = -2 * _PALETTE.T.astype(np.float32)  # [3, 13]
  bias = (_PALETTE.astype(np.float32) ** 2).sum(1)  # [13]
  return (rgb.astype(np.float32) @ w + bias).argmin(1).astype(np.uint8)


@functools.cache
def _cell_table() -> np.ndarray:
  """uint8 [32^3]: the palette index of every colour in an 8x8x8 RGB cell, or 255 when the cell
  straddles a boundary. A cell is settled when all 8 corners are strictly nearest to one colour:
  the distance difference to any two colours is affine in RGB, so then the whole cell is too."""
  i = np.arange(32)
  cells = np.stack(np.meshgrid(i, i, i, indexing="ij"), -1).reshape(-1, 1, 3) * 8  # [C, 1, 3]
  corners = np.stack(np.meshgrid(*[[0, 7]] * 3, indexing="ij"), -1).reshape(1, 8, 3)
  pts = (cells + corners).reshape(-1, 3).astype(np.int64)
  d = ((pts[:, None, :] - _PALETTE[None].astype(np.int64)) ** 2).sum(-1)  # [C*8, 13]
  order = np.argsort(d, 1, kind="stable")
  best = order[:, 0].reshape(-1, 8)
  strict = (np.take_along_axis(d, order[:, :2], 1) @ [-1, 1] > 0).reshape(-1, 8)
  settled = (best == best[:, :1]).all(1) & strict.all(1)
  return np.where(settled, best[:, 0], 255).astype(np.uint8)


def _labels(video: np.ndarray) -> np.ndarray:
  """uint8 [T, H, W, 3] -> palette index uint8 [T, H, W] (nearest colour, squared RGB distance).

  A table over 8x8x8 RGB cells settles most pixels; the rest are computed exactly.
  """
  flat = video.reshape(-1, 3)
  q = flat >> 3
  key = (q[:, 0].astype(np.int32) << 10) | (q[:, 1].astype(np.int32) << 5) | q[:, 2]
  out = _cell_table()[key]
  open_ = np.flatnonzero(out == 255)
  if len(open_):
    out[open_] = _nearest(flat[open_])
  return out.reshape(video.shape[:3])


def _morph(m: np.ndarray, grow: bool) -> np.ndarray:
  """3x3 dilation (grow) or erosion of bool [..., H, W]; outside the canvas counts as empty."""
  p = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)])
  op = np.logical_or if grow else np.logical_and
  rows = op(op(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])  # [..., H, W + 2]
  return op(op(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def _dilate(m: np.ndarray) -> np.ndarray:
  return _morph(m, True)


def _erode(m: np.ndarray) -> np.ndarray:
  return _morph(m, False)


def _open2(m: np.ndarray) -> np.ndarray:
  """2x2 opening of bool [..., H, W]: the union of the 2x2 squares inside m."""
  e = m[..., :-1, :-1] & m[..., 1:, :-1] & m[..., :-1, 1:] & m[..., 1:, 1:]
  out = np.zeros_like(m)
  out[..., :-1, :-1] |= e
  out[..., 1:, :-1] |= e
  out[..., :-1, 1:] |= e
  out[..., 1:, 1:] |= e
  return out


class _Blobs:
  """One colour over a clip: core / region bool [T, H, W] and per-frame box measurements.

  core: the 3x3 opening of the colour's mask (drops rims and specks thinner than 3 px; 2x2 on
  canvases whose small objects are under 8 px);
  region: the core plus mask pixels within 3 px of it (gives back thin tips: triangle apex,
  diamond corners). present[t]: a solid blob (non-empty core, area >= min_area).
  """

  def __init__(self, mask: np.ndarray, min_area: float, small_px: float):
    # Objects under 8 px (canvases under 50 px) may have no 3x3 square inside: open with 2x2.
    core = _dilate(_erode(mask)) & mask if small_px >= 8 else _open2(mask)
    region = core
    for _ in range(3):
      region = _dilate(region) & mask
    self.core, self.region = core, region
    self.present = core.any((1, 2)) & (region.sum((1, 2)) >= min_area)
    self.measure(region)

  def refine(self, luma: np.ndarray, obj_luma: float, bg_luma: np.ndarray,
             exclude: np.ndarray) -> None:
    """Re-measures from luma near the region: pixels within 2 px of it, not in `exclude`, whose
    luma is nearer the object's than the background's. H.264 keeps luma at full resolution but
    halves chroma, so thin tips whose colour bled into the background are given back."""
    near = _dilate(_dilate(self.region)) & ~exclude
    mid = (obj_luma + bg_luma[:, None, None]) / 2  # [T, 1, 1]
    brighter = obj_luma >= bg_luma[:, None, None]
    on = np.where(brighter, luma >= mid, luma <= mid)
    self.measure((near & on) | self.region & ~exclude)

  def measure(self, region: np.ndarray) -> None:
    T, H, W = region.shape
    present = self.present
    self.region = region
    self.area = region.sum((1, 2))
    rows, cols = region.any(2), region.any(1)  # [T, H], [T, W]
    self.r0 = np.where(present, rows.argmax(1), 0)
    self.r1 = np.where(present, H - 1 - rows[:, ::-1].argmax(1), 0)
    self.c0 = np.where(present, cols.argmax(1), 0)
    self.c1 = np.where(present, W - 1 - cols[:, ::-1].argmax(1), 0)
    self.cx = (self.c0 + self.c1 + 1) / 2  # box centre, pixels
    self.cy = (self.r0 + self.r1 + 1) / 2
    self.extent = np.maximum(self.r1 - self.r0 + 1, self.c1 - self.c0 + 1) * present
    self.edge = present & ((self.r0 == 0) | (self.c0 == 0) | (self.r1 == H - 1)
                           | (self.c1 == W - 1))


# ----------------------------------------------------------------------------------------------
# Shape, size, motion
# ----------------------------------------------------------------------------------------------


def _shape_ious(blobs: _Blobs, frames: np.ndarray, s_prior: np.ndarray) -> np.ndarray:
  """Best IoU of each frame's region with each shape of world.SHAPES -> float [F, 4].

  Templates (WORLD.md's pixel-centre rule) are centred on the region's bounding box, +-0.5 px,
  with size s in {n - 0.5, n, n + 0.5, s_prior} for a box of n pixels: a shape of size s spans
  about s pixels, but a diamond's or triangle's tips can fall between pixel centres, so the
  canonical size `s_prior` of the frame (what the spec implies) is tried as well.
  """
  F = len(frames)
  if F == 0:
    return np.zeros((0, len(world.SHAPES)))
  T, H, W = blobs.region.shape
  r0, r1, c0, c1 = (a[frames] for a in (blobs.r0, blobs.r1, blobs.c0, blobs.c1))
  n = np.maximum(r1 - r0, c1 - c0) + 1  # [F]
  S = int(max(n.max(), np.ceil(s_prior.max()))) + 4  # common window, 2 px margin
  top = ((r0 + r1 + 1) // 2 - S // 2)[:, None] + np.arange(S)  # [F, S] rows
  left = ((c0 + c1 + 1) // 2 - S // 2)[:, None] + np.arange(S)  # [F, S] cols
  valid = ((top >= 0) & (top < H))[:, :, None] & ((left >= 0) & (left < W))[:, None, :]
  crop = blobs.region[frames[:, None, None], np.clip(top, 0, H - 1)[:, :, None],
                      np.clip(left, 0, W - 1)[:, None, :]] & valid  # [F, S, S]
  j = np.array([-0.5, 0.0, 0.5])
  oy, ox = (a.ravel() for a in np.meshgrid(j, j, indexing="ij"))  # [9]
  sizes = np.concatenate([n[:, None] + j, s_prior[:, None]], 1)  # [F, 4]
  grid = (F, sizes.shape[1], len(oy))  # V = sizes x offsets
  cy = np.broadcast_to((r0 + r1 + 1)[:, None, None] / 2 + oy, grid).reshape(F, -1)  # [F, V]
  cx = np.broadcast_to((c0 + c1 + 1)[:, None, None] / 2 + ox, grid).reshape(F, -1)
  s = np.broadcast_to(sizes[:, :, None], grid).reshape(F, -1)
  dy = (top[:, None, :, None] + 0.5) - cy[:, :, None, None]  # [F, V, S, 1]
  dx = (left[:, None, None, :] + 0.5) - cx[:, :, None, None]  # [F, V, 1, S]
  area = crop.sum((1, 2))[:, None]  # [F, 1]
  out = np.zeros((F, len(world.SHAPES)))
  for k, shape in enumerate(world.SHAPES):
    tm = world.inside_shape(shape, dx, dy, s[:, :, None, None]) & valid[:, None]  # [F, V, S, S]
    inter = (tm & crop[:, None]).sum((2, 3))
    union = tm.sum((2, 3)) + area - inter
    out[:, k] = (inter / np.maximum(union, 1)).max(1)
  return out


def _shape_seen(ious: np.ndarray, asked: str) -> str | None:
  """The shape frames show (ious: [F, 4] from _shape_ious), or None if no shape fits.

  `asked` when it explains most frames as well as any shape (within _IOU_TIE): at small sizes
  pixel sets can be ambiguous (a 7.7 px diamond centred on a pixel corner has exactly the pixels
  of a 5.5 px circle). Otherwise the shape that fits most frames best.
  """
  if len(ious) == 0:
    return None
  k = world.SHAPES.index(asked)
  fits = ious[:, k] >= ious.max(1) - _IOU_TIE
  if fits.mean() >= 0.5 and np.median(ious[:, k]) >= _MIN_IOU:
    return asked
  best = ious.argmax(1)
  votes = np.bincount(best, minlength=ious.shape[1]) + 1e-3 * ious.mean(0)
  k = int(votes.argmax())
  return world.SHAPES[k] if np.median(ious[best == k, k]) >= _MIN_IOU else None


def _size_word(extent_px: float, m: int) -> str:
  return "large" if extent_px > _SIZE_SPLIT * m else "small"


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
  if isinstance(spec, str):
    spec = world.parse_terse(spec)
  elif isinstance(spec, dict):
    spec = world.SceneSpec.from_json(spec)
  elif not isinstance(spec, world.SceneSpec):
    raise ValueError(f"spec must be a SceneSpec, a spec JSON dict or a terse caption, "
                     f"got {type(spec).__name__}")
  return video, spec


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
