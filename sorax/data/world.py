"""The built-in procedural world: geometry and physics, a pixel-exact renderer, random specs and
clips.

The contract is shared/WORLD.md; an independent scorer written from that page grades our model,
so every rule below follows it to the pixel. The vocabulary, physics constants and scene specs
live in sorax.data.spec, the captions in sorax.data.captions; this module re-exports their public
names (see __all__), so `world.SceneSpec`, `world.caption`, `world.FPS` ... keep working.

Units: `start` and speeds are canvas fractions (x of W, y of H); object_track returns pixels;
frame k is at t = k / FPS seconds. Pixel (row i, column j) belongs to a shape when its centre
(j + 0.5, i + 0.5) lies inside the continuous shape, boundary included.

Everything here is numpy (no jax): the world feeds data pipelines and the oracle on any host.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sorax.data.captions import MOTION_WORDS, caption, crosses_wall, parse_terse
from sorax.data.spec import (BACKGROUNDS, BOUNCE_SPEED, CAPTION_LEVELS, FPS, GRAVITY, MAX_OBJECTS,
                             MOTIONS, OBJECT_COLORS, RESTITUTION, SHAPES, SIZE_FRACTION, SIZES,
                             SPEED, START_SIZE, WALL_BAND, WALL_COLOR, ObjectSpec, SceneSpec)

__all__ = [
    # vocabulary and specs (sorax.data.spec)
    "FPS", "OBJECT_COLORS", "BACKGROUNDS", "WALL_COLOR", "SHAPES", "SIZES", "MOTIONS",
    "CAPTION_LEVELS", "SIZE_FRACTION", "MAX_OBJECTS", "WALL_BAND", "SPEED", "BOUNCE_SPEED",
    "GRAVITY", "RESTITUTION", "START_SIZE", "ObjectSpec", "SceneSpec",
    # captions (sorax.data.captions)
    "MOTION_WORDS", "caption", "crosses_wall", "parse_terse",
    # this module
    "BOX_GAP", "MAX_OVERLAP", "MIN_WHOLE_FRAMES", "size_px", "wall_columns", "inside_shape",
    "object_track", "render", "random_spec", "complete_spec", "Clip", "make_clip",
]

BOX_GAP = 0.05  # random specs: min gap between start boxes, canvas fractions
MAX_OVERLAP = 0.25  # random specs: reject when two boxes overlap in more than this part of the clip
# Random specs, beyond WORLD.md (whose aim is "every clip is measurable"): each object is seen
# whole in at least this many frames, so that a scorer can judge its shape and motion.
MIN_WHOLE_FRAMES = 3

# "Boundary included" for pixel centres, with slack for float rounding: a centre that is on the
# boundary mathematically may land 1e-15 outside it after the arithmetic.
_EPS = 1e-6


# ----------------------------------------------------------------------------------------------
# Geometry and physics
# ----------------------------------------------------------------------------------------------


def size_px(size: str, height: int, width: int) -> float:
  """Object size s in pixels (diameter, side, or diagonal / base and height)."""
  return SIZE_FRACTION[size] * min(height, width)


def wall_columns(width: int) -> np.ndarray:
  """bool [W]: columns whose pixel centre lies in [0.425 W, 0.575 W]."""
  c = np.arange(width) + 0.5
  return (c >= WALL_BAND[0] * width - _EPS) & (c <= WALL_BAND[1] * width + _EPS)


def inside_shape(shape: str, dx, dy, s) -> np.ndarray:
  """Whether points at offset (dx, dy) pixels from an object's box centre lie inside the shape of
  size s (boundary included). Arrays broadcast; y points down, the triangle's apex is up."""
  h = np.asarray(s) / 2
  if shape == "circle":
    return dx * dx + dy * dy <= h * h + _EPS
  if shape == "square":
    return (np.abs(dx) <= h + _EPS) & (np.abs(dy) <= h + _EPS)
  if shape == "triangle":  # apex (0, -h), base y = +h from -h to +h: half-width (dy + h) / 2
    return (dy <= h + _EPS) & (2 * np.abs(dx) <= dy + h + _EPS)
  if shape == "diamond":
    return np.abs(dx) + np.abs(dy) <= h + _EPS
  raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Folds unbounded positions p into [lo, hi] as a ball bouncing between two walls would."""
  span = hi - lo
  if span <= 0:
    return np.full_like(p, (lo + hi) / 2)
  u = np.mod(p - lo, 2 * span)
  return lo + np.where(u > span, 2 * span - u, u)


def _falling_y(y0: float, floor: float, g: float, t: np.ndarray) -> np.ndarray:
  """Centre y (pixels) of an object released at rest at y0 above `floor`, at times t (s).

  Closed form, not a simulation: free fall to the floor, then bounces whose launch speed is 0.6
  of the impact speed, each an exact parabola. Exact at any frame rate and canvas, so renderer and
  oracle (which both call object_track) agree with any other exact implementation to rounding.
  Bounces stop once a bounce would rise less than 1e-4 px ("negligible": no pixel can change);
  the object then rests on the floor.
  """
  h0 = floor - y0
  if h0 <= 0:  # already at (or below) the floor: nothing to fall
    return np.full_like(t, y0)
  t1 = math.sqrt(2 * h0 / g)
  y = np.where(t <= t1, y0 + 0.5 * g * t * t, floor)
  start, v = t1, RESTITUTION * g * t1
  while v * v / (2 * g) >= 1e-4:
    dur = 2 * v / g
    tau = t - start
    y = np.where((tau > 0) & (tau < dur), floor - (v * tau - 0.5 * g * tau * tau), y)
    start, v = start + dur, v * RESTITUTION
  return y


def object_track(obj: ObjectSpec, height: int, width: int,
                 frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-frame box centre x, centre y and box size s, each float64 [frames], in pixels.

  The physics of WORLD.md in one place (the renderer and random-spec checks use it). Needs
  obj.start; raises ValueError when it is None.
  """
  if obj.start is None:
    raise ValueError(f"object_track needs a start position; {obj.color} {obj.shape} has none "
                     "(use complete_spec to place it)")
  H, W, T = int(height), int(width), int(frames)
  t = np.arange(T, dtype=np.float64) / FPS
  x0, y0 = obj.start[0] * W, obj.start[1] * H
  small, large = size_px("small", H, W), size_px("large", H, W)
  frac = np.arange(T) / (T - 1) if T > 1 else np.zeros(T)
  if obj.motion == "growing":
    s = small + (large - small) * frac
  elif obj.motion == "shrinking":
    s = large + (small - large) * frac
  else:
    s = np.full(T, size_px(obj.size, H, W))
  cx, cy = np.full(T, x0), np.full(T, y0)
  m = obj.motion
  if m in ("left", "right"):
    cx = x0 + (SPEED * W if m == "right" else -SPEED * W) * t
  elif m in ("up", "down"):
    cy = y0 + (SPEED * H if m == "down" else -SPEED * H) * t
  elif m == "bouncing":
    sx, sy = obj.dir if obj.dir is not None else (
        1 if obj.start[0] <= 0.5 else -1, 1 if obj.start[1] <= 0.5 else -1)
    half = s[0] / 2
    cx = _reflect(x0 + sx * BOUNCE_SPEED * W * t, half, W - half)
    cy = _reflect(y0 + sy * BOUNCE_SPEED * H * t, half, H - half)
  elif m == "falling":
    cy = _falling_y(y0, H - s[0] / 2, GRAVITY * H, t)
  return cx, cy, s


def render(spec: SceneSpec, height: int, width: int, frames: int) -> np.ndarray:
  """The clip of `spec` on an H x W canvas, `frames` frames: uint8 [T, H, W, 3].

  Objects are drawn in order (later over earlier), the wall over all of them. Every object needs
  a start (ValueError otherwise; see complete_spec).
  """
  H, W, T = int(height), int(width), int(frames)
  if min(H, W, T) < 1:
    raise ValueError(f"canvas must have H, W, T >= 1, got {(H, W, T)}")
  for o in spec.objects:
    if o.start is None:
      raise ValueError(f"render needs every start position; {o.color} {o.shape} has none "
                       "(use complete_spec to place it)")
  video = np.empty((T, H, W, 3), np.uint8)
  video[:] = BACKGROUNDS[spec.background]
  ys = np.arange(H, dtype=np.float64)[None, :, None] + 0.5
  xs = np.arange(W, dtype=np.float64)[None, None, :] + 0.5
  for o in spec.objects:
    cx, cy, s = (a[:, None, None] for a in object_track(o, H, W, T))
    mask = inside_shape(o.shape, xs - cx, ys - cy, s)  # [T, H, W]
    video[mask] = OBJECT_COLORS[o.color]
  if spec.wall:
    video[:, :, wall_columns(W)] = WALL_COLOR
  return video


# ----------------------------------------------------------------------------------------------
# Random specs
# ----------------------------------------------------------------------------------------------


def _extent(o: ObjectSpec, height: int, width: int) -> float:
  """Largest box size the object reaches (growing/shrinking: large), pixels."""
  return size_px("large" if o.motion in START_SIZE else o.size, height, width)


def _start_ranges(o: ObjectSpec, wall: bool, height: int, width: int):
  """Allowed centre x and y at t = 0 (pixels), each a list of (lo, hi) intervals."""
  H, W = height, width
  half = _extent(o, H, W) / 2
  xr, yr = (half, W - half), (half, H - half)
  if o.motion == "right":
    xr = (half, W / 3)
  elif o.motion == "left":
    xr = (2 * W / 3, W - half)
  elif o.motion == "down" or o.motion == "falling":
    yr = (half, H / 3)
  elif o.motion == "up":
    yr = (2 * H / 3, H - half)
  xs = [xr]
  if wall:  # the box must stay clear of the band: cut (band_lo - half, band_hi + half) out
    cut_lo, cut_hi = WALL_BAND[0] * W - half, WALL_BAND[1] * W + half
    xs = [(lo, min(hi, cut_lo)) for lo, hi in xs] + [(max(lo, cut_hi), hi) for lo, hi in xs]
  return [r for r in xs if r[1] >= r[0]], [yr] if yr[1] >= yr[0] else []


def _sample(rng: np.random.Generator, ranges) -> float:
  lengths = np.array([hi - lo for lo, hi in ranges])
  i = rng.choice(len(ranges), p=lengths / lengths.sum()) if lengths.sum() > 0 else 0
  lo, hi = ranges[i]
  return float(lo + (hi - lo) * rng.random())


def _box_gap(a: ObjectSpec, b: ObjectSpec, height: int, width: int) -> float:
  """Gap between two start boxes (largest extents), canvas fractions: max of the x and y gaps."""
  ha, hb = _extent(a, height, width) / 2, _extent(b, height, width) / 2
  gx = (abs(a.start[0] * width - b.start[0] * width) - ha - hb) / width
  gy = (abs(a.start[1] * height - b.start[1] * height) - ha - hb) / height
  return max(gx, gy)


def _overlap_ok(objects, wall: bool, height: int, width: int, frames: int) -> bool:
  """True when no two objects' boxes overlap in more than a quarter of the frames, and every
  object is seen whole (box inside the canvas, off the wall band, clear of the other boxes) in
  at least MIN_WHOLE_FRAMES frames (or all of them, for shorter clips)."""
  tracks = [object_track(o, height, width, frames) for o in objects]
  whole = []
  for x, y, s in tracks:
    h = s / 2 + _EPS
    ok = (x - h >= 0) & (x + h <= width) & (y - h >= 0) & (y + h <= height)
    if wall:
      ok &= (x + h < WALL_BAND[0] * width) | (x - h > WALL_BAND[1] * width)
    whole.append(ok)
  for i in range(len(tracks)):
    for j in range(i):
      (xa, ya, sa), (xb, yb, sb) = tracks[i], tracks[j]
      reach = (sa + sb) / 2
      hit = (np.abs(xa - xb) < reach) & (np.abs(ya - yb) < reach)
      if hit.sum() > MAX_OVERLAP * frames:
        return False
      near = (np.abs(xa - xb) < reach + 1) & (np.abs(ya - yb) < reach + 1)  # 1 px apart
      whole[i] &= ~near
      whole[j] &= ~near
  return all(w.sum() >= min(MIN_WHOLE_FRAMES, frames) for w in whole)


def _place(spec: SceneSpec, rng: np.random.Generator, height: int, width: int, frames: int,
           *, strict: bool, tries: int = 20) -> SceneSpec | None:
  """Gives every start=None object a start following the random-spec rules; None on failure.
  strict=False drops the gap, wall-clearance and overlap rules (a last resort)."""
  H, W = height, width
  for _ in range(tries):
    placed: list[ObjectSpec] = [o for o in spec.objects if o.start is not None]
    out = []
    for o in spec.objects:
      if o.start is None:
        xs, ys = _start_ranges(o, spec.wall and strict, H, W)
        if not xs or not ys:
          return None
        for _ in range(30):
          cand = dataclasses.replace(o, start=(_sample(rng, xs) / W, _sample(rng, ys) / H))
          if not strict or all(_box_gap(cand, p, H, W) >= BOX_GAP for p in placed):
            break
        else:
          break
        placed.append(cand)
        o = cand
      out.append(o)
    if len(out) == len(spec.objects) and (not strict or _overlap_ok(out, spec.wall, H, W, frames)):
      return dataclasses.replace(spec, objects=tuple(out))
  return None


def random_spec(rng: np.random.Generator, height: int, width: int, frames: int, *,
                max_objects: int = 3, wall_prob: float = 0.25) -> SceneSpec:
  """A random, measurable scene following WORLD.md "Random specs".

  1..max_objects objects of distinct colours, uniform shape/motion (size uniform, except small for
  growing and large for shrinking), uniform background, a wall with probability wall_prob. Every
  object starts fully inside, fully visible, its box (largest extent) at least 0.05 from the others
  and clear of the wall band; left/right/up/down movers start in the third they move away from,
  falling ones in the top third. Scenes where two boxes overlap in more than a quarter of the
  frames, where an object is seen whole (box inside the canvas, off the wall band, 1 px clear
  of other boxes) in fewer than 3 frames, or that cannot be placed, are redrawn.
  """
  if not 1 <= max_objects <= MAX_OBJECTS:
    raise ValueError(f"max_objects must be in [1, {MAX_OBJECTS}], got {max_objects}")
  colors, backgrounds = list(OBJECT_COLORS), list(BACKGROUNDS)
  for _ in range(1000):
    n = int(rng.integers(1, max_objects + 1))
    objects = []
    for c in rng.choice(len(colors), size=n, replace=False):
      shape = SHAPES[rng.integers(len(SHAPES))]
      motion = MOTIONS[rng.integers(len(MOTIONS))]
      size = START_SIZE.get(motion) or SIZES[rng.integers(len(SIZES))]
      objects.append(ObjectSpec(colors[c], shape, size, motion))
    spec = SceneSpec(backgrounds[rng.integers(len(backgrounds))], bool(rng.random() < wall_prob),
                     tuple(objects))
    placed = _place(spec, rng, height, width, frames, strict=True, tries=5)
    if placed is not None:
      return placed
  raise RuntimeError(f"could not place a random scene on {height}x{width}x{frames}")


def complete_spec(spec: SceneSpec, rng: np.random.Generator, height: int, width: int,
                  frames: int) -> SceneSpec:
  """`spec` with every start=None object placed by the random-spec rules (others kept as they
  are). Scenes those rules cannot fit (e.g. three large right-movers in a wall clip) are placed
  anyway, without the gap/wall/overlap rules, inside the canvas and their motion's third."""
  if all(o.start is not None for o in spec.objects):
    return spec
  placed = _place(spec, rng, height, width, frames, strict=True, tries=50)
  if placed is None:
    placed = _place(spec, rng, height, width, frames, strict=False, tries=1)
  assert placed is not None  # without the wall cut every range is non-empty
  return placed

# ----------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Clip:
  video: np.ndarray  # uint8 [T, H, W, 3]
  spec: SceneSpec
  captions: dict[str, str]  # level -> caption, every level in CAPTION_LEVELS


def make_clip(seed: int, index: int, height: int, width: int, frames: int,
              **random_spec_kwargs) -> Clip:
  """Clip `index` of the world with seed `seed`: a pure function of its arguments."""
  rng = np.random.default_rng([int(seed), int(index)])
  spec = random_spec(rng, height, width, frames, **random_spec_kwargs)
  captions = {level: caption(spec, level, rng) for level in CAPTION_LEVELS}
  return Clip(render(spec, height, width, frames), spec, captions)
