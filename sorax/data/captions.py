"""Captions of a scene spec at three levels, and the parser that inverts the terse one.

Promises: caption(spec, "terse", rng) is complete and deterministic (rng unused) and
parse_terse inverts it (every start None); "alt" is a lossy alt-text and "descriptive" 1-4
sentences stating every attribute, both drawn from rng in a fixed order, so the same spec and
rng state always give the same text. Depends only on sorax.data.spec (no rendering, no physics).
"""

from __future__ import annotations

import re

import numpy as np

from sorax.data.spec import (BACKGROUNDS, CAPTION_LEVELS, MAX_OBJECTS, MOTIONS, OBJECT_COLORS,
                             SHAPES, SIZES, ObjectSpec, SceneSpec)

MOTION_WORDS = {"static": "", "left": "moving left", "right": "moving right", "up": "moving up",
                "down": "moving down", "bouncing": "bouncing", "falling": "falling",
                "growing": "growing", "shrinking": "shrinking"}


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


# Attribute labels of a caption (attribute_labels): one slot per object in the order the caption
# names them, then one slot for the scene; each slot has one label per group, -1 where the slot
# has no such attribute or the caption does not state it. An object slot past the last object
# names the colour "none" (the extra class), so a reader learns how many objects there are.
SLOT_GROUPS = (("color", len(OBJECT_COLORS) + 1), ("shape", len(SHAPES)), ("size", len(SIZES)),
               ("motion", len(MOTIONS)), ("background", len(BACKGROUNDS)), ("wall", 2))
NUM_SLOTS = MAX_OBJECTS + 1


def attribute_labels(spec: SceneSpec, level: str) -> np.ndarray:
  """int32 [NUM_SLOTS, len(SLOT_GROUPS)]: what a `level` caption of `spec` states, per slot.

  terse and descriptive captions state every attribute; alt states colours and shapes only for
  sure (its size, motion, background and wall words are dropped at random), so those are -1."""
  if level not in CAPTION_LEVELS:
    raise ValueError(f"unknown caption level {level!r}; choose from {CAPTION_LEVELS}")
  full = level != "alt"
  out = np.full((NUM_SLOTS, len(SLOT_GROUPS)), -1, np.int32)
  colors = list(OBJECT_COLORS)
  for k in range(MAX_OBJECTS):
    if k >= len(spec.objects):
      out[k, 0] = len(colors)  # "none": no k-th object
      continue
    o = spec.objects[k]
    out[k, :4] = (colors.index(o.color), SHAPES.index(o.shape),
                  SIZES.index(o.size) if full else -1, MOTIONS.index(o.motion) if full else -1)
  if full:
    out[MAX_OBJECTS, 4:] = (list(BACKGROUNDS).index(spec.background), int(spec.wall))
  return out


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
