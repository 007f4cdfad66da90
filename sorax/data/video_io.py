"""Decode real video files with PyAV (FFmpeg), robust to bad input.

Public API:
  read_video(path, fps=, size=, max_frames=, crop_pos=) -> uint8 [T, H, W, 3] RGB
  probe(path) -> {"frames", "fps", "height", "width", "codec", "duration_s", "rotation"}
  iter_videos(paths, skipped=, **read_kw)    yields (path, video), skips and counts bad files
  VideoReadError                             every problem with an input file
  resize_crop, resample_fps                  re-exported from sorax.data.resample (in-memory twins)
  write_mp4, write_gif                       re-exported from sorax.data.video_write (encoding)

Conventions:
  * Arrays are uint8 RGB, frames-first: [T, H, W, 3]. Heights/widths are *display* sizes: a file
    whose container says "rotate by 90 degrees" (phone videos) is returned upright.
  * Pixels are treated as square (a non-square sample aspect ratio is ignored).
  * Any problem with an input file raises VideoReadError whose message starts with the path and says
    what is wrong; problems with the caller's arguments raise ValueError.

Colour: on read, swscale uses each frame's own colour tags (untagged -> BT.601, as FFmpeg does).
Files written by sorax.data.video_write are tagged limited-range BT.709, so players and read_video
agree.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from sorax.data.resample import (as_rate, check_crop_pos, check_size, crop_offset,
                                 is_positive_number, resample_fps, resize_crop)
from sorax.data.video_write import write_gif, write_mp4

__all__ = [
  "VideoNotFoundError",
  "VideoReadError",
  "iter_videos",
  "probe",
  "read_video",
  "resample_fps",
  "resize_crop",
  "write_gif",
  "write_mp4",
]

log = logging.getLogger(__name__)

# Demuxers that FFmpeg will happily open as a "video" but that are not one: still images (so a PNG
# renamed to .mp4 is rejected) and ANSI-art text (FFmpeg's `tty` demuxer opens any *.txt file as a
# 25 fps video stream).
_NOT_VIDEO_FORMATS = frozenset({"image2", "tty", "bin", "xbin", "adf", "idf", "ico"})


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


class VideoReadError(ValueError):
  """A video file cannot be read. `str(err)` is "<path>: <reason>[ (<detail>)]".

  Attributes:
    path: the file that failed, as given by the caller.
    reason: a short, stable category ("empty file", "no video stream", ...) usable as a counter key.
    detail: extra information (FFmpeg's message, counts), or None.
  """

  def __init__(self, path: Any, reason: str | None = None, detail: str | None = None):
    self.path = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    self._given_reason = reason
    self.reason = reason or "unreadable"
    self.detail = detail
    super().__init__(str(self))

  def __reduce__(self):  # keep pickling working (grain workers send errors across processes)
    return (type(self), (self.path, self._given_reason, self.detail))

  def __str__(self) -> str:
    # Defined here, not left to ValueError, so VideoNotFoundError does not print OSError's
    # "[Errno 2] ..." form. VideoReadError("x.mp4: custom message") prints just that.
    msg = self.path if self._given_reason is None else f"{self.path}: {self.reason}"
    return msg + (f" ({self.detail})" if self.detail else "")


class VideoNotFoundError(VideoReadError, FileNotFoundError):
  """The path does not exist. Both a VideoReadError and a FileNotFoundError (errno ENOENT)."""

  def __init__(self, path: Any, reason: str | None = "file not found", detail: str | None = None):
    super().__init__(path, reason, detail)
    self.errno, self.strerror, self.filename = errno.ENOENT, reason, self.path


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _check_path(path: Any) -> str:
  """Returns `path` as a str after cheap filesystem checks; raises VideoReadError."""
  p = os.fspath(path)
  if not os.path.exists(p):
    raise VideoNotFoundError(p, "file not found")
  if os.path.isdir(p):
    raise VideoReadError(p, "is a directory, not a video file")
  if os.path.getsize(p) == 0:
    raise VideoReadError(p, "empty file", "0 bytes")
  return p


@contextlib.contextmanager
def _open_video(path: Any) -> Iterator[tuple[Any, Any]]:
  """Opens `path`, yields (container, first video stream); every failure is a VideoReadError."""
  p = _check_path(path)
  try:
    container = av.open(p, mode="r")
  except (av.error.InvalidDataError, av.error.EOFError) as e:
    # FFmpeg says either, depending on where the bytes stop.
    if _looks_like_mp4(p):
      # The usual case: a download or recording that stopped before the index was written.
      raise VideoReadError(
        p, "truncated/corrupt", f"MP4/MOV file without a readable index (moov): {_ffmpeg_msg(e)}"
      ) from e
    raise VideoReadError(p, "not a video / unknown format", _ffmpeg_msg(e)) from e
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoReadError(p, "cannot open", _ffmpeg_msg(e)) from e
  with container:
    fmt_names = set(container.format.name.split(","))
    if fmt_names & _NOT_VIDEO_FORMATS or any(n.endswith("_pipe") for n in fmt_names):
      raise VideoReadError(
        p, "not a video / unknown format", f"FFmpeg reads it as {container.format.name!r}"
      )
    if not container.streams:
      raise VideoReadError(p, "truncated/corrupt", "container has no streams")
    if not container.streams.video:
      kinds = sorted({s.type for s in container.streams})
      raise VideoReadError(p, "no video stream", f"streams: {', '.join(kinds)}")
    yield container, container.streams.video[0]


def _looks_like_mp4(path: str) -> bool:
  """True if the file starts with an ISO-BMFF 'ftyp' box (mp4, mov, m4v, 3gp)."""
  with open(path, "rb") as f:
    head = f.read(12)
  return head[4:8] == b"ftyp"


def _ffmpeg_msg(e: BaseException) -> str:
  # FFmpegError's str() repeats the path; its strerror is the useful part.
  return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _stream_fps(stream: Any) -> Fraction | None:
  """Nominal frame rate of `stream`, or None when the container does not say."""
  for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
    if rate is not None and rate > 0:
      return Fraction(rate)
  return None


def _frame_rgb(
  frame: Any, size: tuple[int, int] | None, crop_pos: tuple[float, float] = (0.5, 0.5)
) -> np.ndarray:
  """Converts a decoded frame to upright uint8 RGB [H, W, 3], resized/cropped to `size` if given.

  The crop window sits at `crop_pos` (fractions of the overflow, (0.5, 0.5) = centre).
  """
  # Counter-clockwise quarter turns that make the frame upright (from the display matrix; its
  # mirror flags, which phones do not write, are ignored).
  k = (int(frame.rotation or 0) // 90) % 4
  h, w = frame.height, frame.width
  if size is None:
    rgb = frame.to_ndarray(format="rgb24")
  else:
    out_h, out_w = size
    dh, dw = (w, h) if k % 2 else (h, w)  # display size
    # Scale so the frame covers the target (keep aspect), then centre-crop the overflow.
    scale = max(out_h / dh, out_w / dw)
    sh, sw = max(out_h, round(dh * scale)), max(out_w, round(dw * scale))
    ch, cw = (sw, sh) if k % 2 else (sh, sw)  # same size in coded orientation
    # AREA is swscale's box filter: no aliasing when shrinking; bilinear is fine when growing.
    interp = "AREA" if ch * cw < h * w else "BILINEAR"
    rgb = frame.reformat(width=cw, height=ch, format="rgb24", interpolation=interp)
    rgb = rgb.to_ndarray()
  if k:
    rgb = np.rot90(rgb, k)
  if size is not None:
    top, left = crop_offset(rgb.shape[0], size[0], crop_pos[0]), crop_offset(
      rgb.shape[1], size[1], crop_pos[1]
    )
    rgb = rgb[top : top + size[0], left : left + size[1]]
  return np.ascontiguousarray(rgb)


def _check_read_args(fps: Any, size: Any, max_frames: Any) -> tuple[Fraction | None, Any, Any]:
  if fps is not None:
    if not is_positive_number(fps):
      raise ValueError(f"fps must be a positive number or None, got {fps!r}")
    fps = as_rate(fps)
  if size is not None:
    size = check_size(size)
  if max_frames is not None and (
    not isinstance(max_frames, (int, np.integer)) or isinstance(max_frames, bool) or max_frames < 1
  ):
    raise ValueError(f"max_frames must be a positive int or None, got {max_frames!r}")
  return fps, size, max_frames


def read_video(
  path: str | os.PathLike,
  *,
  fps: float | None = None,
  size: tuple[int, int] | None = None,
  max_frames: int | None = None,
  crop_pos: tuple[float, float] = (0.5, 0.5),
) -> np.ndarray:
  """Decodes the first video stream of `path` into uint8 RGB [T, H, W, 3].

  Args:
    path: a video file in any container/codec FFmpeg knows (mp4, mkv, webm, mov, avi, gif, ...).
    fps: if given, resample in time to this rate: output frame k shows the source frame whose
      timestamp is nearest to k / fps seconds after the first frame (ties go to the earlier frame),
      for every k / fps before the end of the last source frame. Lower rates drop frames, higher
      rates repeat them; variable-frame-rate sources come out at a constant rate.
    size: if given, (H, W) of the output: scale keeping aspect ratio until the frame covers H x W,
      then crop the centre (or the window at `crop_pos`).
    max_frames: stop after this many output frames (decoding stops early too).
    crop_pos: (y, x) in [0, 1]: where the size crop sits in the overflow: (0, 0) top-left,
      (0.5, 0.5) centre, (1, 1) bottom-right. Training pipelines draw it at random for a random
      crop; the same position is used for every frame. Ignored without `size`.

  Returns:
    uint8 array [T, H, W, 3], T >= 1, upright (container rotation applied).

  Raises:
    VideoReadError: the file is missing (VideoNotFoundError), empty, a directory, not a video
      (including still images and text), has no video stream, or is truncated/corrupt: a decode
      error, a final partial packet, or frames covering clearly less than the duration the
      container declares. Damage after the first `max_frames` output frames goes unnoticed.
    ValueError: bad fps/size/max_frames arguments.
  """
  fps, size, max_frames = _check_read_args(fps, size, max_frames)
  crop_pos = check_crop_pos(crop_pos)
  limit = max_frames if max_frames is not None else float("inf")
  with _open_video(path) as (container, stream):
    p = os.fspath(path)
    out: list[np.ndarray] = []
    try:
      if fps is None:
        for frame, _, _ in _timed_frames(container, stream, p):
          out.append(_frame_rgb(frame, size, crop_pos))
          if len(out) >= limit:
            break
      else:
        # Output frame k's time is k / fps after the first frame. A target is settled once
        # a source frame at or after it arrives: the nearest source frame is that one or the
        # previous one (timestamps increase). Ties go to the previous (earlier) frame.
        prev = prev_t = t0 = None
        k = 0
        for frame, t, end in _timed_frames(container, stream, p):
          t0 = t if t0 is None else t0
          while len(out) < limit and t0 + k / fps <= t:
            target = t0 + k / fps
            pick = frame if prev is None or t - target < target - prev_t else prev
            out.append(_frame_rgb(pick, size, crop_pos))
            k += 1
          if len(out) >= limit:
            break
          prev, prev_t, prev_end = frame, t, end
        else:
          # All frames decoded: the targets before the end of the last frame show it.
          while prev is not None and len(out) < limit and t0 + k / fps < prev_end:
            out.append(_frame_rgb(prev, size, crop_pos))
            k += 1
    except (av.FFmpegError, ValueError, RuntimeError, OSError) as e:
      if isinstance(e, VideoReadError):
        raise
      # Decoder errors were mapped inside _timed_frames; this is swscale or numpy conversion.
      raise VideoReadError(p, "cannot convert frames to RGB", _ffmpeg_msg(e)) from e
    if not out:
      raise VideoReadError(p, "truncated/corrupt", "decoded 0 frames")
    return np.stack(out)


def _timed_frames(container: Any, stream: Any, p: str) -> Iterator[tuple[Any, Fraction, Fraction]]:
  """Decodes `stream`, yielding (frame, start_s, end_s) with exact, strictly increasing times.

  Raises VideoReadError if decoding fails, or, once the stream is exhausted, if the file ends in a
  partial packet or the decoded frames cover clearly less than the duration the container declares
  (a file cut at a packet boundary decodes "cleanly" to a short clip). Not checked when the caller
  stops early.
  """
  stream.thread_type = "AUTO"  # frame + slice threads, whatever the codec supports
  nominal = _stream_fps(stream) or Fraction(25)  # FFmpeg's own guess when the file says nothing
  tb = stream.time_base
  n = 0
  first_t = t = end = None
  last_packet_corrupt = False
  try:
    for packet in container.demux(stream):
      if packet.size:
        last_packet_corrupt = packet.is_corrupt
      for frame in packet.decode():
        if frame.pts is not None and tb is not None and (t is None or frame.pts * tb > t):
          t = frame.pts * tb
        else:
          # Missing or non-increasing pts (broken muxers): assume the nominal spacing.
          t = Fraction(0) if t is None else t + 1 / nominal
        d = frame.duration
        end = t + (d * tb if d and d > 0 and tb is not None else 1 / nominal)
        first_t = t if first_t is None else first_t
        n += 1
        yield frame, t, end
  except av.FFmpegError as e:
    raise VideoReadError(
      p, "truncated/corrupt", f"decode failed after {n} frames: {_ffmpeg_msg(e)}"
    ) from e
  # Frame threading swallows the decoder's error on a final partial packet (slice threading
  # reports it), so look at the packet flags instead.
  if last_packet_corrupt:
    raise VideoReadError(p, "truncated/corrupt", f"file ends inside a packet after {n} frames")
  declared = stream.duration * tb if stream.duration and tb is not None else None
  if declared is None and container.duration and len(container.streams) == 1:
    # Matroska/WebM store only the file's duration. With other streams (audio often runs a
    # little longer than video) it says nothing reliable about the video, so it is not used.
    declared = Fraction(container.duration, av.time_base)
  if declared and n:
    covered = end - first_t
    # Slack: 2 frames (last-frame duration guesses) and 1% (edit-list rounding).
    if declared - covered > 2 / nominal + declared / 100:
      raise VideoReadError(
        p,
        "truncated/corrupt",
        f"decoded {n} frames covering {float(covered):.3g} s of the "
        f"{float(declared):.3g} s the container declares",
      )


def probe(path: str | os.PathLike) -> dict[str, Any]:
  """Reads a video's metadata, decoding only its first frame (which also proves it is decodable).

  Returns:
    {"frames": int | None (container's frame count; None when it does not say, e.g. mkv/webm),
     "fps": float (nominal rate; 25.0 when the container does not say, as FFmpeg assumes),
     "height": int, "width": int (display size, after rotation, as read_video returns),
     "codec": str (FFmpeg decoder name, e.g. "h264", "gif"),
     "duration_s": float | None,
     "rotation": int (counter-clockwise degrees read_video applies; usually 0)}

  Raises:
    VideoReadError: as read_video, except that damage after the first frame is not seen.
  """
  with _open_video(path) as (container, stream):
    p = os.fspath(path)
    try:
      first = next(iter(container.decode(stream)), None)
    except (av.FFmpegError, ValueError, RuntimeError, OSError) as e:
      raise VideoReadError(
        p, "truncated/corrupt", f"cannot decode first frame: {_ffmpeg_msg(e)}"
      ) from e
    if first is None:
      raise VideoReadError(p, "truncated/corrupt", "decoded 0 frames")
    rotation = int(first.rotation or 0)
    h, w = first.height, first.width
    if (rotation // 90) % 2:
      h, w = w, h
    if stream.duration and stream.time_base is not None:
      duration = float(stream.duration * stream.time_base)
    elif container.duration:
      duration = container.duration / av.time_base
    else:
      duration = None
    return {
      "frames": int(stream.frames) if stream.frames else None,
      "fps": float(_stream_fps(stream) or 25),
      "height": int(h),
      "width": int(w),
      "codec": stream.codec_context.name,
      "duration_s": duration,
      "rotation": rotation,
    }


def iter_videos(
  paths: Iterable[str | os.PathLike],
  skipped: dict[str, int] | None = None,
  **read_kwargs: Any,
) -> Iterator[tuple[str | os.PathLike, np.ndarray]]:
  """Yields (path, read_video(path, **read_kwargs)) for every readable file in `paths`.

  Files that raise VideoReadError are skipped with a warning, never raised; if `skipped` is given,
  `skipped[err.reason]` is incremented for each (e.g. {"empty file": 2, "no video stream": 1}).
  Other exceptions (bad read_kwargs, bugs) propagate.
  """
  for path in paths:
    try:
      video = read_video(path, **read_kwargs)
    except VideoReadError as e:
      log.warning("skipping video: %s", e)
      if skipped is not None:
        skipped[e.reason] = skipped.get(e.reason, 0) + 1
      continue
    yield path, video
