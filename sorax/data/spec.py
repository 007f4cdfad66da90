"""The world's vocabulary and scene specs: what a clip may contain, and how a spec is checked.

The contract is shared/WORLD.md; an independent scorer written from that page grades our model,
so every constant here follows it. In short: 1-3 flat-coloured objects (circle, square,
triangle, diamond; small = 0.16 * min(H, W), large = 0.32 * min(H, W)) move on a coloured
background (static, left/right/up/down at 0.5 canvas/s, bouncing at 0.4 canvas/s, falling under
2.0 H/s^2 with restitution 0.6, growing/shrinking), optionally behind a gray vertical wall.

Promises: the names, colours and physics constants of WORLD.md; ObjectSpec and SceneSpec, which
validate on construction (ValueError naming the bad field and value) and round-trip through the
WORLD.md JSON layout (to_json / from_json). No rendering, captions or randomness here; the
renderer is sorax.data.world and the captions sorax.data.captions.
"""

from __future__ import annotations

import dataclasses
import math
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
# Growing objects start small and shrinking ones large; their `size` must say so.
START_SIZE = {"growing": "small", "shrinking": "large"}


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
    if self.motion in START_SIZE and self.size != START_SIZE[self.motion]:
      raise ValueError(f"size {self.size!r} with motion {self.motion!r}: a {self.motion} object "
                       f"starts {START_SIZE[self.motion]}, so its size must be "
                       f"{START_SIZE[self.motion]!r}")
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
