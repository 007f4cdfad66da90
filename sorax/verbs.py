"""Generation verbs on given frames: animate, extend, fill, interpolate, connect, loop, edit.

All of them are one mechanism (sorax/diffusion/conditioning.py): a window of the model's clip
length whose known pixel frames are encoded and held fixed while the model makes the rest
(`Pipeline.generate(known=, given=)`); `edit` is SDEdit (`strength`). Longer results come from
windows with overlapping context, so a video can be extended again and again.

Inputs are uint8 arrays at the model's canvas ([H, W, 3] images, [T, H, W, 3] videos at 8 fps);
`fit_image` / `fit_video` bring other sizes there (with a notice). Frame indices are 0-based and
inclusive. Every function returns uint8 [T, H, W, 3]; writing (watermark, C2PA) is the caller's
(sorax/cli.py goes through the safety guard like `sample`).

A latent frame can only be given whole: with the causal pixel codec frame 0 stands alone and
later frames go in pairs, so a known frame whose pair partner is unknown is regenerated (and
then put back from the input).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sorax.data import resample
from sorax.diffusion import conditioning as cond

Notice = Callable[[str], None]


def _stderr(msg: str) -> None:
  print(f"sorax: notice: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def check_pixels(x: Any, ndim: int, name: str) -> np.ndarray:
  """uint8 RGB [H, W, 3] (ndim 3) or [T, H, W, 3] (ndim 4), or one clear error naming `name`."""
  x = np.asarray(x)
  kind = "image" if ndim == 3 else "video"
  if x.ndim != ndim:
    if ndim == 3 and x.ndim == 2:
      raise ValueError(f"{name}: a one-channel (grayscale) image; give an RGB image")
    raise ValueError(f"{name}: expected an {kind} of shape "
                     f"{'[H, W, 3]' if ndim == 3 else '[T, H, W, 3]'}, got {x.shape}")
  if min(x.shape) < 1:
    raise ValueError(f"{name}: empty {kind} {x.shape}")
  c = x.shape[-1]
  if c == 4:
    raise ValueError(f"{name}: the {kind} has an alpha channel; flatten it to RGB first")
  if c == 1:
    raise ValueError(f"{name}: a one-channel (grayscale) {kind}; give RGB")
  if c != 3:
    raise ValueError(f"{name}: {c} channels, expected RGB (3)")
  if x.dtype != np.uint8:
    raise ValueError(f"{name}: pixels must be uint8, got {x.dtype}")
  return x


def fit_video(video: Any, height: int, width: int, name: str = "video",
              notice: Notice = _stderr) -> np.ndarray:
  """uint8 [T, H, W, 3] cropped to the aspect and resized to height x width (with a notice)."""
  video = check_pixels(video, 4, name)
  if video.shape[1:3] != (height, width):
    notice(f"{name} is {video.shape[2]}x{video.shape[1]}; centre-cropped and resized to the "
           f"model's {width}x{height}")
    video = resample.resize_crop(video, height, width)
  return video


def fit_image(image: Any, height: int, width: int, name: str = "image",
              notice: Notice = _stderr) -> np.ndarray:
  image = check_pixels(image, 3, name)
  return fit_video(image[None], height, width, name, notice)[0]


def parse_range(text: str, frames: int) -> tuple[int, int]:
  """'A-B' (0-based, inclusive) of a `frames`-frame video -> (A, B), or a clear error."""
  try:
    a, b = (int(p) for p in str(text).split("-"))
  except ValueError:
    raise ValueError(f"frame range {text!r} must look like A-B (0-based, inclusive)") from None
  if not 0 <= a <= b < frames:
    raise ValueError(f"frame range {a}-{b} is out of bounds for a video of {frames} frames "
                     f"(0-{frames - 1})")
  return a, b


# ----------------------------------------------------------------------------------------------
# The window
# ----------------------------------------------------------------------------------------------


# The verbs' renoise settings: no fresh noise on the steps below t = 0.5 (VERB_ETA_LATE), and
# none at all for the latent frames beside given ones (VERB_QUIET), so what is made next to
# given frames settles deterministically (BUILD_NOTES, verbs at 96 steps: seams 1.7-2.1 instead
# of 2.2-3.4, all-right as good). `eta_late=()` / `quiet=0` in a verb's kwargs turn them off.
VERB_ETA_LATE = (0.5, 0.0)
VERB_QUIET = 1
# Candidates a window draws by default (`window(best_of=)`), the smoothest join kept.
VERB_BEST_OF = 1
# Guidance toward the given frames (Pipeline.generate's `guide_context`) where they are video
# (extend, fill, connect, loop): the text at CFG's scale, the given frames at this one, in three
# branches (1.4x the time). Measured on held-out specs: every seam shrinks (extend backward
# 1.79 -> 1.35), all-right level. Not for one or two given images (animate, interpolate): there
# it holds the objects where the image has them and motion fails (animate 0.75 -> 0.38 all
# right; BUILD_NOTES, "Guidance toward the given frames"). `guide_context=` overrides it.
VERB_GUIDE_CONTEXT = 8.0


def _sampling(kw: dict, guide_context: float = 0.0) -> dict:
  """The sampling settings of `kw` with the verbs' defaults; `guide_context` is the default
  guidance toward the given frames (VERB_GUIDE_CONTEXT for video context, else 0)."""
  out = {k: kw[k] for k in ("steps", "cfg_scale", "sampler", "eta", "eta_late", "quiet",
                            "guide_context")
         if kw.get(k) is not None}
  out.setdefault("eta_late", VERB_ETA_LATE)
  out.setdefault("quiet", VERB_QUIET)
  out.setdefault("guide_context", guide_context)
  return out


# The smallest step (mean absolute change, 0-255 levels) a join is measured against: given
# frames that barely move would otherwise make any change at the join look like a jump.
JOIN_FLOOR = 0.5


def join_score(video: np.ndarray, known: Sequence[bool]) -> float:
  """How much `video` [F, H, W, 3] jumps where made frames meet given ones: the largest mean
  absolute change across a boundary between a known and an unknown frame, over the median
  change between consecutive given frames (the given video's own pace; the made frames' where
  fewer than two frames are given), floored at JOIN_FLOOR. About 1: the join moves like the
  video; lower is smoother. 0 where nothing is given or nothing made."""
  known = np.asarray(known, bool)
  v = video.astype(np.float32)
  d = np.abs(v[1:] - v[:-1]).mean(axis=(1, 2, 3))  # d[k]: frames k -> k + 1
  joins = known[1:] != known[:-1]
  if not joins.any():
    return 0.0
  inside = d[known[1:] & known[:-1]]
  if not inside.size:
    inside = d[~known[1:] & ~known[:-1]]
  pace = max(float(np.median(inside)) if inside.size else 0.0, JOIN_FLOOR)
  return float(d[joins].max() / pace)


def window(pipe, prompt: str, pixels: np.ndarray, known: Sequence[bool], *, seed: int = 0,
           best_of: int | None = None, video_context: bool = True, **kw) -> np.ndarray:
  """One clip of the model's length: `pixels` uint8 [F, H, W, 3] where `known` [F] is True;
  the latent frames whose pixels are all known are held, the rest generated. Known pixel frames
  are returned exactly as given. `best_of` K > 1 draws K candidates in one batch (candidate 0
  is the plain sample) and keeps the one that joins the given frames most smoothly
  (`join_score`; default VERB_BEST_OF). `video_context`: the given frames are video (extend,
  fill, connect, loop), guided toward at VERB_GUIDE_CONTEXT unless kw sets `guide_context`;
  False for given images (animate, interpolate): no context guidance by default.
  -> uint8 [F, H, W, 3]."""
  best_of = VERB_BEST_OF if best_of is None else int(best_of)
  if best_of < 1:
    raise ValueError(f"best_of={best_of} must be a positive integer")
  frames = len(pixels)
  known = np.asarray(known, bool)
  given = cond.latent_given(pipe.codec, known)
  latent = pipe.encode(np.where(known[:, None, None, None], pixels, 0).astype(np.uint8)[None])
  h, w = pixels.shape[1:3]
  # K rows of one prompt: row j's noise is (seed, j), so row 0 is the plain sample.
  outs = pipe.generate([prompt] * best_of, frames=frames, height=h, width=w, seed=seed,
                       known=np.repeat(latent, best_of, 0),
                       given=np.repeat(given[None], best_of, 0), batch_size=best_of,
                       **_sampling(kw, VERB_GUIDE_CONTEXT if video_context else 0.0))
  outs[:, known] = pixels[known]
  pick = int(np.argmin([join_score(o, known) for o in outs])) if best_of > 1 else 0
  return outs[pick]


def _clip_frames(pipe) -> int:
  return int(pipe.cfg.data.frames)


def _canvas(pipe) -> tuple[int, int]:
  return int(pipe.cfg.data.height), int(pipe.cfg.data.width)


def _context(groups: list[list[int]], m: int, have: int, from_end: bool) -> int:
  """Latent frames (<= m) of context whose pixel frames fit in `have` input frames."""
  while m > 0 and len(sum(groups[-m:] if from_end else groups[:m], [])) > have:
    m -= 1
  return m


# ----------------------------------------------------------------------------------------------
# Verbs
# ----------------------------------------------------------------------------------------------


def animate(pipe, image: np.ndarray, prompt: str, **kw) -> np.ndarray:
  """A clip whose first frame is `image` [H, W, 3]."""
  frames = _clip_frames(pipe)
  pixels = np.zeros((frames,) + image.shape, np.uint8)
  pixels[0] = image
  return window(pipe, prompt, pixels, np.arange(frames) == 0, video_context=False, **kw)


def extend(pipe, video: np.ndarray, seconds: float, direction: str = "forward",
           prompt: str = "", *, context: int | None = None, seed: int = 0,
           **kw) -> np.ndarray:
  """`video` [T, H, W, 3] with `seconds` more of it after (forward) or before (backward), made
  window by window, each window given the last (first) `context` latent frames made so far
  (default: half a window). -> the whole video, T + round(8 seconds) frames."""
  if direction not in ("forward", "backward"):
    raise ValueError(f"direction {direction!r} must be forward or backward")
  need = int(round(8 * float(seconds)))
  if need < 1:
    raise ValueError(f"seconds={seconds} adds no frame (at 8 fps)")
  frames = _clip_frames(pipe)
  groups = cond.frame_groups(pipe.codec, frames)
  m_max = context if context is not None else len(groups) // 2
  if not 1 <= m_max < len(groups):
    raise ValueError(f"context={m_max} latent frames must be in [1, {len(groups) - 1}]")
  cur, made, i = video, 0, 0
  backward = direction == "backward"
  while made < need:
    m = _context(groups, m_max, len(cur), from_end=backward)
    if m == 0:
      raise ValueError(f"a {len(cur)}-frame video is too short to extend {direction}: it needs "
                       f"at least {len(groups[-1] if backward else groups[0])} frames")
    idx = sorted(sum(groups[-m:] if backward else groups[:m], []))
    n = len(idx)
    pixels = np.zeros((frames,) + cur.shape[1:], np.uint8)
    known = np.zeros(frames, bool)
    known[idx] = True
    pixels[idx] = cur[:n] if backward else cur[-n:]
    out = window(pipe, prompt, pixels, known, seed=seed + i, **kw)
    new = out[:frames - n] if backward else out[n:]
    cur = np.concatenate([new, cur] if backward else [cur, new])
    made += len(new)
    i += 1
  extra = made - need  # the last window may overshoot: drop the far end
  return cur[extra:] if backward else cur[:len(cur) - extra]


def fill(pipe, video: np.ndarray, missing: tuple[int, int], prompt: str = "", *, seed: int = 0,
         **kw) -> np.ndarray:
  """`video` with frames missing[0]..missing[1] (inclusive) made anew from both sides."""
  a, b = missing
  length, frames = len(video), _clip_frames(pipe)
  if not 0 <= a <= b < length:
    raise ValueError(f"frame range {a}-{b} is out of bounds for a video of {length} frames")
  gap = b - a + 1
  if gap > frames - 2 and length > gap:
    raise ValueError(f"{gap} missing frames do not fit one {frames}-frame window with context; "
                     f"fill at most {frames - 2} at a time")
  start = 0 if length <= frames else min(max(a - (frames - gap) // 2, 0), length - frames)
  span = np.arange(start, start + frames)
  inside = span < length
  pixels = np.zeros((frames,) + video.shape[1:], np.uint8)
  pixels[inside] = video[span[inside]]
  known = inside & ((span < a) | (span > b))
  out = window(pipe, prompt, pixels, known, seed=seed, **kw)
  result = video.copy()
  result[a:b + 1] = out[a - start:b - start + 1]
  return result


def interpolate(pipe, first_image: np.ndarray, last_image: np.ndarray, prompt: str,
                **kw) -> np.ndarray:
  """A clip from `first_image` to `last_image`. The last latent frame is given whole, so with
  frame pairs the last image is held for its pair (the last 1/8 s)."""
  frames = _clip_frames(pipe)
  groups = cond.frame_groups(pipe.codec, frames)
  pixels = np.zeros((frames,) + first_image.shape, np.uint8)
  known = np.zeros(frames, bool)
  pixels[0], known[0] = first_image, True
  pixels[groups[-1]], known[groups[-1]] = last_image, True
  return window(pipe, prompt, pixels, known, video_context=False, **kw)


def bridge_context(groups: list[list[int]]) -> int:
  """Latent frames of context a bridge takes from each side: a third of the window."""
  return max(1, len(groups) // 3)


def _bridge(pipe, a: np.ndarray, b: np.ndarray, prompt: str, **kw) -> np.ndarray:
  """Frames leading from the end of `a` into the start of `b`: one window given a's last and
  b's first latent frames (about a third of the window each), the middle made."""
  frames = _clip_frames(pipe)
  groups = cond.frame_groups(pipe.codec, frames)
  m = bridge_context(groups)
  ma, mb = _context(groups, m, len(a), False), _context(groups, m, len(b), True)
  if ma == 0 or mb == 0:
    raise ValueError(f"videos of {len(a)} and {len(b)} frames are too short to connect")
  ia, ib = sum(groups[:ma], []), sum(groups[-mb:], [])
  pixels = np.zeros((frames,) + a.shape[1:], np.uint8)
  known = np.zeros(frames, bool)
  pixels[ia], pixels[ib] = a[-len(ia):], b[:len(ib)]
  known[ia] = known[ib] = True
  out = window(pipe, prompt, pixels, known, **kw)
  return out[len(ia):frames - len(ib)]


def connect(pipe, a: np.ndarray, b: np.ndarray, prompt: str, **kw) -> np.ndarray:
  """`a`, then frames made to lead into `b`, then `b`."""
  return np.concatenate([a, _bridge(pipe, a, b, prompt, **kw), b])


def loop(pipe, prompt: str, *, seed: int = 0, **kw) -> np.ndarray:
  """A clip that plays seamlessly on repeat: a text-to-video clip, then a bridge from its end
  back to its start."""
  h, w = _canvas(pipe)
  clip = pipe.generate([prompt], frames=_clip_frames(pipe), height=h, width=w, seed=seed,
                       **_sampling(kw))[0]
  return np.concatenate([clip, _bridge(pipe, clip, clip, prompt, seed=seed + 1, **kw)])


def edit(pipe, video: np.ndarray, prompt: str, strength: float, *, seed: int = 0,
         **kw) -> np.ndarray:
  """SDEdit: each window of `video` noised to t = strength and denoised towards `prompt`.
  0 returns the input (up to the codec), 1 ignores it. Windows are edited independently."""
  if not 0.0 <= strength <= 1.0:
    raise ValueError(f"strength={strength} must be in [0, 1]")
  if kw.pop("best_of", None) not in (None, 1):
    raise ValueError("edit draws one sample a window: it has no given frames to join")
  frames = _clip_frames(pipe)
  h, w = video.shape[1:3]
  parts = []
  for i, s in enumerate(range(0, len(video), frames)):
    chunk = video[s:s + frames]
    pad = frames - len(chunk)  # the last window: repeat its last frame, then crop
    full = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
    out = pipe.generate([prompt], frames=frames, height=h, width=w, seed=seed + i,
                        known=pipe.encode(full[None]), strength=float(strength),
                        **_sampling(kw))[0]
    parts.append(out[:len(chunk)])
  return np.concatenate(parts)


VERBS = ("animate", "extend", "fill", "interpolate", "connect", "loop", "edit")
