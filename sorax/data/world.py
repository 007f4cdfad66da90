"""The built-in procedural world: scene specs, a pixel-exact renderer and three caption levels.

The contract is shared/WORLD.md; an independent scorer written from that page grades our model,
so every rule below follows it to the pixel. In short: 1-3 flat-coloured objects (circle, square,
triangle, diamond; small = 0.16 * min(H, W), large = 0.32 * min(H, W)) move on a coloured
background (static, left/right/up/down at 0.5 canvas/s, bouncing at 0.4 canvas/s, falling under
2.0 H/s^2 with restitution 0.6, growing/shrinking), optionally behind a gray vertical wall.

Units: `start` and speeds are canvas fractions (x of W, y of H); object_track returns pixels;
frame k is at t = k / FPS seconds. Pixel (row i, column j) belongs to a shape when its centre
(j + 0.5, i + 0.5) lies inside the continuous shape, boundary included.

Everything here is numpy (no jax): the world feeds data pipelines and the oracle on any host.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

FPS = 8
OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (235, 220, 40),
    "green": (40, 190, 60), "cyan": (40, 210, 220), "blue": (40, 80, 230),
    "magenta": (210, 50, 210), "white": (240, 240, 240)}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 12), "navy": (18, 24, 72), "forest": (16, 56, 30), "maroon": (72, 18, 24)}
WALL_COLOR = (128, 128, 128)
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
MOTIONS = ("static", "left", "right", "up", "down", "bouncing", "falling", "growing", "shrinking")
CAPTION_LEVELS = ("alt", "terse", "descriptive")

SIZE_FRACTION = {"small": 0.16, "large": 0.32}  # of min(H, W): diameter, side or diagonal
MAX_OBJECTS = 3
WALL_BAND = (0.425, 0.575)  # x range of the wall, fractions of W
SPEED = 0.5  # left/right/up/down, canvas fractions per second
BOUNCE_SPEED = 0.4  # per axis, canvas fractions per second
GRAVITY = 2.0  # H per second^2
RESTITUTION = 0.6
BOX_GAP = 0.05  # random specs: min gap between start boxes, canvas fractions
MAX_OVERLAP = 0.25  # random specs: reject when two boxes overlap in more than this part of the clip
# Random specs, beyond WORLD.md (whose aim is "every clip is measurable"): each object is seen
# whole in at least this many frames, so that a scorer can judge its shape and motion.
MIN_WHOLE_FRAMES = 3

# "Boundary included" for pixel centres, with slack for float rounding: a centre that is on the
# boundary mathematically may land 1e-15 outside it after the arithmetic.
_EPS = 1e-6

MOTION_WORDS = {"static": "", "left": "moving left", "right": "moving right", "up": "moving up",
                "down": "moving down", "bouncing": "bouncing", "falling": "falling",
                "growing": "growing", "shrinking": "shrinking"}
_START_SIZE = {"growing": "small", "shrinking": "large"}


def _choose(name: str, value: Any, allowed) -> None:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"unknown {name} {value!r}; choose from {tuple(allowed)}")


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
  """One object. `start`: centre of its s x s box at t = 0 in canvas fractions (x of W, y of H),
  or None when unknown (a prompt). `dir`: optional (+-1, +-1) initial direction of `bouncing`."""
  color: str
  shape: str
  size: str
  motion: str
  start: tuple[float, float] | None = None
  dir: tuple[int, int] | None = None

  def __post_init__(self):
    _choose("color", self.color, OBJECT_COLORS)
    _choose("shape", self.shape, SHAPES)
    _choose("size", self.size, SIZES)
    _choose("motion", self.motion, MOTIONS)
    if self.motion in _START_SIZE and self.size != _START_SIZE[self.motion]:
      raise ValueError(f"size {self.size!r} with motion {self.motion!r}: a {self.motion} object "
                       f"starts {_START_SIZE[self.motion]}, so its size must be "
                       f"{_START_SIZE[self.motion]!r}")
    if self.start is not None:
      try:
        start = tuple(float(v) for v in self.start)
      except (TypeError, ValueError):
        start = ()
      if len(start) != 2 or not all(math.isfinite(v) for v in start):
        raise ValueError(f"start must be two finite numbers [x, y], got {self.start!r}")
      object.__setattr__(self, "start", start)
    if self.dir is not None:
      d = tuple(self.dir) if isinstance(self.dir, (list, tuple)) else ()
      if len(d) != 2 or any(isinstance(v, bool) or v not in (-1, 1) for v in d):
        raise ValueError(f"dir must be [sx, sy] with each +1 or -1, got {self.dir!r}")
      object.__setattr__(self, "dir", (int(d[0]), int(d[1])))


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """A clip's content: background, wall, 1-3 objects of distinct colours (drawn in order)."""
  background: str
  wall: bool
  objects: tuple[ObjectSpec, ...]

  def __post_init__(self):
    _choose("background", self.background, BACKGROUNDS)
    if not isinstance(self.wall, (bool, np.bool_)):
      raise ValueError(f"wall must be true or false, got {self.wall!r}")
    object.__setattr__(self, "wall", bool(self.wall))
    objects = tuple(self.objects)
    if not 1 <= len(objects) <= MAX_OBJECTS:
      raise ValueError(f"objects: a scene has 1 to {MAX_OBJECTS} objects, got {len(objects)}")
    if not all(isinstance(o, ObjectSpec) for o in objects):
      raise ValueError("objects must be ObjectSpec instances")
    colors = [o.color for o in objects]
    for c in colors:
      if colors.count(c) > 1:
        raise ValueError(f"objects: duplicate color {c!r}; each object has its own color")
    object.__setattr__(self, "objects", objects)

  def to_json(self) -> dict:
    """The WORLD.md JSON layout; "start" only when known, "dir" only when set."""
    objects = []
    for o in self.objects:
      d = {"color": o.color, "shape": o.shape, "size": o.size, "motion": o.motion}
      if o.start is not None:
        d["start"] = [float(o.start[0]), float(o.start[1])]
      if o.dir is not None:
        d["dir"] = [int(o.dir[0]), int(o.dir[1])]
      objects.append(d)
    return {"background": self.background, "wall": self.wall, "objects": objects}

  @classmethod
  def from_json(cls, d: dict) -> SceneSpec:
    """Inverse of to_json. Raises ValueError naming the bad field and value. Top-level "canvas"
    and "fps" (carried beside a spec in some files) are ignored; other unknown keys are errors."""
    if not isinstance(d, dict):
      raise ValueError(f"spec must be a JSON object, got {type(d).__name__}")
    unknown = set(d) - {"background", "wall", "objects", "canvas", "fps"}
    if unknown:
      raise ValueError(f"spec: unknown fields {sorted(unknown)}")
    for key in ("background", "wall", "objects"):
      if key not in d:
        raise ValueError(f"spec: missing field {key!r}")
    if not isinstance(d["objects"], list):
      raise ValueError(f"objects must be a list, got {d['objects']!r}")
    objects = []
    for i, od in enumerate(d["objects"]):
      if not isinstance(od, dict):
        raise ValueError(f"objects[{i}] must be an object, got {od!r}")
      bad = set(od) - {"color", "shape", "size", "motion", "start", "dir"}
      missing = [k for k in ("color", "shape", "size", "motion") if k not in od]
      if bad or missing:
        raise ValueError(f"objects[{i}]: unknown fields {sorted(bad)}, missing fields {missing}")
      try:
        objects.append(ObjectSpec(od["color"], od["shape"], od["size"], od["motion"],
                                  od.get("start"), od.get("dir")))
      except ValueError as e:
        raise ValueError(f"objects[{i}]: {e}") from None
    return cls(d["background"], d["wall"], tuple(objects))


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
  return size_px("large" if o.motion in _START_SIZE else o.size, height, width)


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
      size = _START_SIZE.get(motion) or SIZES[rng.integers(len(SIZES))]
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
# Captions
# ----------------------------------------------------------------------------------------------


def _article(word: str) -> str:
  return "an" if word[0] in "aeiou" else "a"


def _terse_object(o: ObjectSpec) -> str:
  return " ".join(w for w in (o.size, o.color, o.shape, MOTION_WORDS[o.motion]) if w)


def _terse(spec: SceneSpec) -> str:
  text = " and ".join(_terse_object(o) for o in spec.objects)
  text += f" on a {spec.background} background"
  return text + (", behind a gray wall" if spec.wall else "")


def _alt(spec: SceneSpec, rng: np.random.Generator) -> str:
  """Lossy alt-text: colours and shapes always; size, motion, background, wall only sometimes."""
  parts = []
  for o in spec.objects:
    words = ([o.size] if rng.random() < 0.3 else []) + [o.color, o.shape]
    if o.motion != "static" and rng.random() < 0.3:
      words.append(MOTION_WORDS[o.motion])
    text = " ".join(words)
    parts.append(f"{_article(text)} {text}" if rng.random() < 0.6 else text)
  objs = " and ".join(parts) if rng.random() < 0.6 else ", ".join(parts)
  if rng.random() < 0.25:
    objs += f" on {spec.background}"
  if spec.wall and rng.random() < 0.25:
    objs += " and a wall"
  template = ("{}", "{}", "{} video", "video of {}", "clip of {}", "footage of {}", "{} clip",
              "{}.")[rng.integers(8)]
  return template.format(objs)


_MOTION_PHRASES = {
    "static": ("stays still", "does not move", "sits still", "rests in place"),
    "left": ("moves left", "moves to the left", "slides left", "travels to the left"),
    "right": ("moves right", "moves to the right", "slides right", "travels to the right"),
    "up": ("moves up", "rises", "drifts upward", "travels up"),
    "down": ("moves down", "sinks", "drifts downward", "travels down"),
    "bouncing": ("bounces around", "bounces off the edges", "bounces around the frame"),
    "falling": ("falls and bounces on the floor", "falls to the bottom and bounces",
                "falls under gravity and bounces"),
    "growing": ("grows large", "grows from small to large", "keeps growing until it is large"),
    "shrinking": ("shrinks", "shrinks from large to small", "keeps shrinking until it is small"),
}
_CROSS = ("passes behind the wall and comes out the other side",
          "disappears behind the wall and reappears unchanged",
          "is hidden by the wall for a moment, then comes back")
_STAY = ("stays {side} of the wall", "never goes behind the wall, staying on its {side}",
         "keeps to the {side} of the wall")


def _region(start) -> tuple[str, str]:
  x, y = start
  return (("left", "center", "right")[min(2, max(0, int(x * 3)))],
          ("top", "middle", "bottom")[min(2, max(0, int(y * 3)))])


def crosses_wall(o: ObjectSpec) -> bool:
  """Whether an object heads behind the wall band (given a long enough clip): a horizontal mover
  starting on the side it moves away from, or any bouncing object."""
  if o.start is None:
    return False
  if o.motion == "bouncing":
    return True
  return (o.motion == "right" and o.start[0] < 0.5) or (o.motion == "left" and o.start[0] > 0.5)


def _descriptive_object(o: ObjectSpec, wall: bool, rng: np.random.Generator, lead: bool) -> str:
  pick = lambda xs: xs[rng.integers(len(xs))]
  noun = f"{o.size} {o.color} {o.shape}"
  noun = f"{'A' if lead else 'a'}{'n' if noun[0] in 'aeiou' else ''} {noun}"
  verb = pick(_MOTION_PHRASES[o.motion])
  where = ""
  if o.start is not None:
    x, y = _region(o.start)
    where = pick((f"at the {y} {x}", f"{'on the ' + x if x != 'center' else 'in the center'}, "
                  f"{'in the middle' if y == 'middle' else 'at the ' + y}",
                  f"starting at the {y} {x}"))
  text = f"{noun} {where} {verb}" if where else f"{noun} {verb}"
  if wall and o.start is not None:
    side = "left" if o.start[0] < 0.5 else "right"
    text += " and " + (pick(_CROSS) if crosses_wall(o) else pick(_STAY).format(side=side))
  return text


def _descriptive(spec: SceneSpec, rng: np.random.Generator) -> str:
  """1-4 sentences stating every attribute: per object size, colour, shape, start region, motion
  and what the wall does to it; then background and wall."""
  pick = lambda xs: xs[rng.integers(len(xs))]
  bg = spec.background
  wall_sentence = (pick(("A gray wall stands in the middle of the frame.",
                         "A gray vertical wall runs down the middle.",
                         "There is a gray wall down the center."))
                   if spec.wall else pick(("There is no wall.", "No wall is in the way.",
                                           "Nothing blocks the view: there is no wall.")))
  bg_sentence = pick((f"The background is {bg}.", f"It all happens on a {bg} background.",
                      f"Behind everything is a plain {bg} background."))
  style = rng.integers(3)
  if style == 0:  # one sentence per object, then one for background and wall
    body = " ".join(_descriptive_object(o, spec.wall, rng, True) + "." for o in spec.objects)
    tail = bg_sentence[:-1] + (", and a gray wall stands in the middle." if spec.wall
                              else ", with no wall.")
    return f"{body} {tail}"
  objs = [_descriptive_object(o, spec.wall, rng, False) for o in spec.objects]
  listed = objs[0] if len(objs) == 1 else ", ".join(objs[:-1]) + " and " + objs[-1]
  if style == 1:  # scene first, then all objects in one sentence
    return f"{bg_sentence} {wall_sentence} In the scene, {listed}."
  return f"On a {bg} background, {listed}. {wall_sentence}"


def caption(spec: SceneSpec, level: str, rng: np.random.Generator) -> str:
  """One caption of `spec`: 'alt' (lossy), 'terse' (complete, parse_terse inverts it) or
  'descriptive' (1-4 sentences, varied wording; needs starts for the position words)."""
  if level == "terse":
    return _terse(spec)
  if level == "alt":
    return _alt(spec, rng)
  if level == "descriptive":
    return _descriptive(spec, rng)
  raise ValueError(f"unknown caption level {level!r}; choose from {CAPTION_LEVELS}")


_TERSE_RE = re.compile(
    r"^(?P<objects>.+?) on a (?P<bg>[a-z]+) background(?P<wall>, behind a gray wall)?$")
_WORDS_MOTION = {w: m for m, w in MOTION_WORDS.items()}


def parse_terse(text: str) -> SceneSpec:
  """The spec a terse caption states (every start None). Case, repeated spaces and a final
  period are forgiven. Raises ValueError naming the text and the part that does not parse."""
  if not isinstance(text, str):
    raise ValueError(f"terse caption must be a string, got {type(text).__name__}")
  norm = " ".join(text.lower().split()).rstrip(".").strip()
  m = _TERSE_RE.match(norm)
  if m is None:
    raise ValueError(f"cannot parse terse caption {text!r}: expected '<objects> on a <background> "
                     "background[, behind a gray wall]'")
  objects = []
  for part in m.group("objects").split(" and "):
    words = part.split()
    motion = _WORDS_MOTION.get(" ".join(words[3:]))
    if len(words) < 3 or motion is None:
      raise ValueError(f"cannot parse terse caption {text!r}: object {part!r} is not "
                       "'<size> <color> <shape> [<motion>]'")
    try:
      objects.append(ObjectSpec(words[1], words[2], words[0], motion))
    except ValueError as e:
      raise ValueError(f"cannot parse terse caption {text!r}: object {part!r}: {e}") from None
  try:
    return SceneSpec(m.group("bg"), m.group("wall") is not None, tuple(objects))
  except ValueError as e:
    raise ValueError(f"cannot parse terse caption {text!r}: {e}") from None


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
