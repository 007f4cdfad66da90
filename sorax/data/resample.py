"""Resampling of clips already in memory: the same geometry and frame-rate rules as
sorax.data.video_io.read_video applies to files, in pure numpy (no FFmpeg).

  resize_crop(video, height, width, crop_pos=)   read_video's size / crop_pos
  resample_fps(video, src_fps, fps)              read_video's fps
  resize_matrix(n_in, n_out)                     the area-averaging / bilinear 1-D filter
"""

from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Any

import numpy as np


def is_positive_number(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool) and x > 0


def check_size(size: Any) -> tuple[int, int]:
  """(height, width) of positive ints, else a ValueError naming the value."""
  if (
    len(size) != 2
    or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    or min(size) < 1
  ):
    raise ValueError(f"size must be (height, width) with positive ints, got {size!r}")
  return int(size[0]), int(size[1])


def crop_offset(have: int, want: int, pos: float) -> int:
  """First index of a `want`-long window at fraction `pos` of the `have - want` overflow."""
  # floor, so pos=0.5 is the same (have - want) // 2 centre crop as before crop_pos existed.
  return min(have - want, int((have - want) * pos))


def check_crop_pos(crop_pos: Any) -> tuple[float, float]:
  try:
    fy, fx = (float(v) for v in crop_pos)
  except (TypeError, ValueError):
    fy = fx = float("nan")
  if not (0.0 <= fy <= 1.0 and 0.0 <= fx <= 1.0) or isinstance(crop_pos, str):
    raise ValueError(f"crop_pos must be (y, x) with both in [0, 1], got {crop_pos!r}")
  return fy, fx


def as_rate(fps: Any, name: str = "fps") -> Fraction:
  """A frame rate as the exact Fraction read_video uses (so 29.97 is 30000/1001)."""
  if not is_positive_number(fps):
    raise ValueError(f"{name} must be a positive number, got {fps!r}")
  return Fraction(float(fps)).limit_denominator(1001)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
  """float32 [n_out, n_in]: rows of a triangle (linear) filter, widened when shrinking.

  Widening the filter by the shrink factor averages every input pixel into the output (like
  swscale's AREA, which read_video uses), so stripes and text do not alias; growing is bilinear.
  """
  scale = n_out / n_in
  support = max(1.0, 1.0 / scale)  # filter half-width, in input pixels
  centres = (np.arange(n_out) + 0.5) / scale - 0.5  # output pixel centres in input coordinates
  w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / support)
  return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)  # every row has a weight >= 0.5


def resize_crop(
  video: np.ndarray,
  height: int,
  width: int,
  *,
  crop_pos: tuple[float, float] = (0.5, 0.5),
) -> np.ndarray:
  """Crops `video` [T, H, W, C] to the aspect of height x width and resizes it to that size.

  The same geometry as read_video(size=(height, width), crop_pos=...) for clips already in memory
  (world clips, decoded frames that need a second, different crop): the largest window with the
  target aspect, at `crop_pos` ((0.5, 0.5) = centre, (0, 0) top-left; a random crop draws it),
  resized with a filter that averages when shrinking and interpolates linearly when growing. The
  two can differ by a pixel of rounding in where the window starts.

  Returns:
    uint8 input -> uint8 [T, height, width, C] (rounded); any other dtype -> float32.
  """
  if not isinstance(video, np.ndarray) or video.ndim != 4:
    raise ValueError(
      f"video must be a numpy array [T, H, W, C], got "
      f"{getattr(video, 'shape', type(video).__name__)}"
    )
  if min(video.shape) < 1:
    raise ValueError(f"video must have T, H, W, C >= 1, got shape {video.shape}")
  check_size((height, width))
  fy, fx = check_crop_pos(crop_pos)
  _, h_in, w_in, _ = video.shape
  # Window with the target aspect: full height or full width, whichever the aspect allows.
  if h_in * width > w_in * height:  # source is taller than the target aspect
    win_h, win_w = max(1, min(h_in, round(w_in * height / width))), w_in
  else:
    win_h, win_w = h_in, max(1, min(w_in, round(h_in * width / height)))
  top, left = crop_offset(h_in, win_h, fy), crop_offset(w_in, win_w, fx)
  window = video[:, top : top + win_h, left : left + win_w]  # [T, win_h, win_w, C]
  if (win_h, win_w) == (height, width):
    return np.array(window, dtype=np.uint8 if video.dtype == np.uint8 else np.float32)
  rows, cols = resize_matrix(win_h, height), resize_matrix(win_w, width)
  x = np.moveaxis(window.astype(np.float32), 3, 1)  # [T, C, win_h, win_w]
  out = np.moveaxis(rows @ x @ cols.T, 1, 3)  # [T, height, width, C]
  if video.dtype == np.uint8:
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
  return np.ascontiguousarray(out, dtype=np.float32)


def resample_fps(video: np.ndarray, src_fps: float, fps: float) -> np.ndarray:
  """Resamples a constant-rate clip `video` [T, ...] shot at `src_fps` to `fps`.

  The rule read_video(fps=) applies to files: output frame k shows the source frame nearest to
  k / fps seconds (ties go to the earlier frame), for every k / fps before the end of the last
  source frame (T / src_fps). Lower rates drop frames, higher rates repeat them.

  Returns:
    video[idx] for those indices: [ceil(T * fps / src_fps), ...], same dtype.
  """
  if not isinstance(video, np.ndarray) or video.ndim < 1 or len(video) < 1:
    raise ValueError(
      f"video must be a numpy array [T, ...] with T >= 1, got "
      f"{getattr(video, 'shape', type(video).__name__)}"
    )
  src, dst = as_rate(src_fps, "src_fps"), as_rate(fps)
  n = len(video)
  span = n * dst / src  # output frames fit before the end of the last source frame
  n_out = -(-span.numerator // span.denominator)  # ceil
  idx = []
  for k in range(n_out):
    u = k * src / dst  # the target time, in source frames
    i = u.numerator // u.denominator
    idx.append(i + 1 if u - i > Fraction(1, 2) and i + 1 < n else i)
  return video[np.asarray(idx, dtype=np.int64)]
