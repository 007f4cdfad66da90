"""Pixel measurement for the world's scorer (sorax.data.oracle): what each colour shows per frame.

Promises, numpy only and free of any per-check decision:
  - _labels: every pixel -> its exact nearest palette colour (8 object colours, 4 backgrounds,
    wall gray; squared RGB distance, ties to the lower index).
  - _Blobs: one colour's per-frame blob (opened core + attached pixels, optionally re-measured on
    luma) with area, bounding box, centre, extent and canvas-edge contact.
  - _shape_ious / _shape_seen: IoU of a blob with WORLD.md's pixel-centre shape templates and the
    shape that fits; _size_word: the size word of a box extent.
  - _dilate / _erode / _open2: 3x3 and 2x2 morphology on bool [..., H, W].
"""

from __future__ import annotations

import functools
import math

import numpy as np

from sorax.data import world

_OBJ_NAMES = tuple(world.OBJECT_COLORS)
_BG_NAMES = tuple(world.BACKGROUNDS)
_PALETTE = np.array(list(world.OBJECT_COLORS.values()) + list(world.BACKGROUNDS.values())
                    + [world.WALL_COLOR], np.int32)  # [13, 3]
_N_OBJ = len(_OBJ_NAMES)
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # BT.709, what H.264 keeps sharp
_WALL = len(_PALETTE) - 1

_SIZE_SPLIT = math.sqrt(0.16 * 0.32)  # WORLD.md size check, fraction of min(H, W)
_MIN_IOU = 0.55  # below this an object matches no shape
_IOU_TIE = 0.03  # shapes whose IoUs differ by less explain a frame equally well


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
# Shape, size
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

