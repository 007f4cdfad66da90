"""What a world video shows, read from its pixels alone: a spec-free description and caption.

The oracle (sorax.data.oracle) answers "is this what the prompt asked for?"; `describe_video`
answers "what is this?" with the same measurements, so the two agree by construction: every
object colour that is a solid blob in enough frames (the oracle's `no_extra` rule) becomes an
object whose shape, size and motion are read the way the oracle reads them, in two passes (the
first reads motion and shape with neutral guesses; the second re-reads with them, since a
growing object's start size and an ambiguous small shape depend on what is asked). Background
and wall are the oracle's. Attributes it cannot read are None, and the caption says so
("shape" for an unread shape, no motion word for an unread motion, which a terse caption also
uses for static: `describe_video` keeps the difference).

Used by the content policy's output check `caption_policy` (the output's caption goes through
the same prompt policy) and as the world's recaptioner of clips that come without a spec.
numpy only; knows no model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sorax.data import oracle, world
from sorax.data.captions import MOTION_WORDS
from sorax.data.measure import _OBJ_NAMES, _Blobs, _labels


@dataclasses.dataclass(frozen=True)
class SeenObject:
  """One object colour the video shows; None where the measurement cannot tell."""
  color: str
  shape: str | None
  size: str | None
  motion: str | None
  start: tuple[float, float]  # box centre in its first solid frame, canvas fractions
  frames_seen: int


@dataclasses.dataclass(frozen=True)
class Description:
  background: str
  wall: bool
  objects: tuple[SeenObject, ...]  # in order of first appearance (then area)

  def spec(self) -> world.SceneSpec | None:
    """The scene as a SceneSpec, or None when it is not one (no object, more than the world's
    3, or an attribute unread)."""
    objs = self.objects
    if not 1 <= len(objs) <= world.MAX_OBJECTS or any(
        None in (o.shape, o.size, o.motion) for o in objs):
      return None
    try:
      return world.SceneSpec(self.background, self.wall, tuple(
          world.ObjectSpec(o.color, o.shape, o.size, o.motion, start=o.start) for o in objs))
    except ValueError:  # e.g. read as growing but large at the start: not a world scene
      return None

  def caption(self) -> str:
    """A terse caption (WORLD.md's form) of what is seen."""
    parts = []
    for o in self.objects:
      words = [o.size or "", o.color, o.shape or "shape", MOTION_WORDS.get(o.motion or "", "")]
      parts.append(" ".join(w for w in words if w))
    scene = " and ".join(parts) if parts else "nothing"
    text = f"{scene} on a {self.background} background"
    return text + (", behind a gray wall" if self.wall else "")


def _seen_colors(video: np.ndarray) -> list[tuple[str, int, int, tuple[float, float]]]:
  """(colour, first solid frame, frames seen, start) of every object colour that is a solid blob
  in at least the oracle's max(2, 10% of T) frames."""
  T, H, W, _ = video.shape
  m = min(H, W)
  labels = _labels(video)
  need = oracle._need_frames(T)
  min_area = max(2.0, oracle._MIN_BLOB * m * m)
  seen = []
  for i, name in enumerate(_OBJ_NAMES):
    mask = labels == i
    if not mask.any():
      continue
    b = _Blobs(mask, min_area, world.size_px("small", H, W))
    n = int(b.present.sum())
    if n >= need:
      k = int(np.argmax(b.present))
      seen.append((k, -int(b.area[k]), name, n, (float(b.cx[k] / W), float(b.cy[k] / H))))
  seen.sort(key=lambda s: s[:2])  # first appearance, then larger first
  return [(c, k, n, start) for k, _, c, n, start in seen]


def _guess(r: dict[str, Any], old: tuple[str, str, str]) -> tuple[str, str, str]:
  """The next pass's (shape, size, motion) to ask: what was read, else the old guess; a growing
  (shrinking) object is asked as small (large), its start size by WORLD.md."""
  shape, size, motion = r["shape"] or old[0], r["size"] or old[1], r["motion"] or old[2]
  return shape, world.START_SIZE.get(motion, size), motion


def describe_video(video: np.ndarray) -> Description:
  """video uint8 [T, H, W, 3] -> what it shows. Raises ValueError for a wrong dtype or shape."""
  probe = world.SceneSpec("black", False, (world.ObjectSpec("red", "circle", "small", "static"),))
  video, _ = oracle._check_inputs(video, probe)
  seen = _seen_colors(video)
  if not seen:
    base = oracle.explain_video(video, probe)
    return Description(base["background"], bool(base["wall"]), ())
  # The oracle scores at most MAX_OBJECTS asked objects per pass: read them in groups of three.
  guess = {c: ("circle", "small", "static") for c, *_ in seen}
  result: dict[str, dict[str, Any]] = {}
  background, wall = "black", False
  for _ in range(2):
    for g in range(0, len(seen), world.MAX_OBJECTS):
      group = seen[g:g + world.MAX_OBJECTS]
      spec = world.SceneSpec("black", False, tuple(
          world.ObjectSpec(c, *guess[c], start=start) for c, _, _, start in group))
      ex = oracle.explain_video(video, spec)
      background, wall = ex["background"], bool(ex["wall"])
      for (c, *_), r in zip(group, ex["objects"]):
        result[c] = r
    guess = {c: _guess(result[c], guess[c]) for c, *_ in seen}
  objects = tuple(SeenObject(c, result[c]["shape"], result[c]["size"], result[c]["motion"],
                             start, n) for c, _, n, start in seen)
  return Description(background, wall, objects)


def caption_video(video: np.ndarray) -> str:
  """The terse caption of what a world video shows (see `Description.caption`)."""
  return describe_video(video).caption()
