"""Faults a generator makes, painted into world clips: training data for a judge of samples.

A video DiT that has learned the world still draws some objects as no world object moves:
two copies at once (the commonest fault of the shipped model: BUILD_NOTES, "Why straight
tracks fail"), a jump from one place to another, an object that vanishes mid-frame, a blob
that comes and goes, one drawn on two tracks by turns, a track that drifts and steps back, or
a mover that starts late.
Each fault here takes a clip (a render, or with `tol` / `noise` a generator's noisy redrawing
of one) and one object colour and returns the clip with that colour's pixels so broken; a
captioner trained on both learns to tell a world object from a broken one
(sorax/models/captioner.py's `broken` motion).

numpy only; knows no model. Videos are uint8 [T, H, W, 3]; the colour is an RGB triple.
"""

from __future__ import annotations

import numpy as np

from sorax.data import world

FAULTS = ("copy", "jump", "vanish", "flicker", "jitter", "wobble", "stall")
# What the shipped captioner was trained with: `stall` was tried on top and did not move the
# judge's picks (BUILD_NOTES, "What the judge still misses"), so it is an option.
DEFAULT_FAULTS = ("copy", "jump", "vanish", "flicker", "jitter", "wobble")
# The world motions a stall breaks: movers at a constant speed start at once; a falling object
# starts at rest (a late release is still a fall), and a static, growing or shrinking one has no
# start to delay.
STALL_MOTIONS = ("left", "right", "up", "down")


def color_mask(video: np.ndarray, rgb, tol: int = 0) -> np.ndarray:
  """bool [T, H, W]: the pixels within `tol` of this colour in every channel (0: exactly it;
  renders are pixel-exact, a generator's samples are not)."""
  diff = np.abs(video.astype(np.int16) - np.asarray(rgb, np.int16))
  return np.all(diff <= tol, -1)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """mask [..., H, W] moved by (dy, dx) pixels, not wrapping: what leaves the canvas is gone."""
  out = np.zeros_like(mask)
  h, w = mask.shape[-2:]
  ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
  xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
  out[..., yd, xd] = mask[..., ys, xs]
  return out


def _offset(rng: np.random.Generator, h: int, w: int, least: float) -> tuple[int, int]:
  """A shift of at least `least` pixels (and at most half the canvas) in a random direction."""
  r = rng.uniform(least, 0.5 * min(h, w))
  a = rng.uniform(0, 2 * np.pi)
  return int(round(r * np.sin(a))), int(round(r * np.cos(a)))


def _frames(rng: np.random.Generator, t: int, least: int) -> np.ndarray:
  """bool [t]: a run of at least `least` consecutive frames (not all of them)."""
  n = int(rng.integers(least, t))
  start = int(rng.integers(0, t - n + 1))
  out = np.zeros(t, bool)
  out[start:start + n] = True
  return out


def paint(video: np.ndarray, rgb, fault: str, rng: np.random.Generator,
          background, *, tol: int = 0, noise: int = 0) -> np.ndarray:
  """A copy of `video` [T, H, W, 3] uint8 with the object of colour `rgb` broken by `fault`.

  copy: a second copy of the object, shifted by >= its size, in a run of >= 2 frames (on the
    canvas: up to 16 shifts are tried).
  jump: from a frame on, the object is drawn shifted by >= 4 px (and no longer where it was).
  vanish: from a frame on, the object is gone (painted over with the background).
  flicker: the object is shown only in a run of frames, gone in the others.
  jitter: in scattered frames (>= 2, not all) the object is drawn away from its track by >= its
    size, then back: one object, two tracks, swapped frame by frame.
  wobble: the object's track takes a random walk of one-pixel steps on top of its motion, over
    >= 3 px on one axis: a track no world motion draws (a mover that drifts sideways or steps
    back, a static object that wanders).
  stall: the object holds its frame-k look (place and size) for frames 0..k-1, k in 1..4, then
    goes on as before: a late start, which no world motion has (a `down` track that starts late
    reads as accelerating, like `falling`). An object whose first frames are all alike (a
    static one) cannot stall: it gets a wobble instead.
  The colour must be in the video (within `tol`, color_mask); `background` is the RGB the
  vanished pixels become. `noise` > 0 adds U(-noise, noise) to every painted pixel, so a fault
  in a generator's (noisy) sample is not told by its exact colours.
  """
  if fault not in FAULTS:
    raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
  t, h, w, _ = video.shape
  mask = color_mask(video, rgb, tol)
  if not mask.any():
    raise ValueError(f"colour {tuple(rgb)} is not in the video: nothing to break")
  out = video.copy()
  col = np.asarray(rgb, np.uint8)
  bg = np.asarray(background, np.uint8)
  painted = np.zeros(mask.shape, bool)

  def put(where, rgb_):
    out[where] = rgb_
    painted[where] = True

  extent = np.sqrt(mask.sum((1, 2)).max())  # about the object's side, px
  if fault == "copy":
    frames = _frames(rng, t, 2)
    for _ in range(16):  # a copy shifted off the canvas would be no fault at all
      dy, dx = _offset(rng, h, w, max(3.0, 1.2 * extent))
      ghost = _shift(mask, dy, dx) & frames[:, None, None] & ~mask
      if ghost.sum() >= 2:
        break
    put(ghost, col)
  elif fault in ("jump", "jitter"):
    if fault == "jump":
      k = int(rng.integers(1, t - 1))
      moved = np.arange(t) >= k
      dy, dx = _offset(rng, h, w, 4.0)
    else:
      moved = np.zeros(t, bool)
      moved[rng.choice(t, size=int(rng.integers(2, max(3, t // 2))), replace=False)] = True
      dy, dx = _offset(rng, h, w, max(3.0, 1.2 * extent))
    away = mask & moved[:, None, None]
    put(away, bg)
    put(_shift(away, dy, dx), col)
  elif fault == "wobble":
    for _ in range(16):
      walk = np.cumsum(rng.integers(-1, 2, size=(t, 2)), 0)
      walk -= walk[0]
      if np.ptp(walk, 0).max() >= 3:
        break
    to = np.zeros_like(mask)
    for k, (dy, dx) in enumerate(walk):
      to[k] = _shift(mask[k], int(dy), int(dx))
    off = np.any(walk != 0, 1)[:, None, None]
    put(mask & off, bg)
    put(to & off, col)
  elif fault == "stall":
    # Frames 1..4 unlike frame 0: holding one of them draws something; none: nothing moves early.
    held = [k for k in range(1, min(5, t)) if not np.array_equal(mask[k], mask[0])]
    if not held:
      return paint(video, rgb, "wobble", rng, background, tol=tol, noise=noise)
    k = int(rng.choice(held))
    early = np.arange(t)[:, None, None] < k
    put(mask & early, bg)
    put(np.broadcast_to(mask[k], mask.shape) & early, col)
  elif fault == "vanish":
    k = int(rng.integers(2, t - 2))
    put(mask & (np.arange(t) >= k)[:, None, None], bg)
  else:  # flicker
    keep = _frames(rng, t, 2)
    put(mask & ~keep[:, None, None], bg)
  if noise > 0 and painted.any():
    shake = rng.integers(-noise, noise + 1, size=(int(painted.sum()), 3))
    out[painted] = np.clip(out[painted].astype(np.int16) + shake, 0, 255).astype(np.uint8)
  return out


def roughen(video: np.ndarray, rng: np.random.Generator, *, edge: float = 0.3,
            speckle: float = 0.01) -> np.ndarray:
  """A copy of `video` [T, H, W, 3] uint8 drawn the way a generator draws a right clip: ragged
  edges (each pixel whose neighbour in a random direction differs takes the neighbour's colour
  with probability U(0, edge)) and stray pixels of object colours (density U(0, speckle)). The
  objects and their motion are unchanged, so a clip's caption still holds."""
  out = video.copy()
  t, h, w, _ = video.shape
  dy, dx = [(0, 1), (0, -1), (1, 0), (-1, 0)][int(rng.integers(4))]
  near = np.roll(video, (dy, dx), (1, 2))
  differs = np.any(near != video, -1)
  flip = differs & (rng.random((t, h, w)) < rng.uniform(0, edge))
  out[flip] = near[flip]
  dots = rng.random((t, h, w)) < rng.uniform(0, speckle)
  palette = np.asarray(list(world.OBJECT_COLORS.values()), np.uint8)
  out[dots] = palette[rng.integers(len(palette), size=int(dots.sum()))]
  return out
