"""Decode and encode real video files with PyAV (FFmpeg), robust to bad input.

Public API:
  read_video(path, fps=, size=, max_frames=) -> uint8 [T, H, W, 3] RGB
  probe(path) -> {"frames", "fps", "height", "width", "codec", "duration_s", "rotation"}
  write_mp4(path, video, fps=8, crf=18)      H.264, atomic
  write_gif(path, video, fps=8)              palette GIF, atomic
  iter_videos(paths, skipped=, **read_kw)    yields (path, video), skips and counts bad files
  VideoReadError                             every problem with an input file

Conventions:
  * Arrays are uint8 RGB, frames-first: [T, H, W, 3]. Heights/widths are *display* sizes: a file
    whose container says "rotate by 90 degrees" (phone videos) is returned upright.
  * Pixels are treated as square (a non-square sample aspect ratio is ignored).
  * Any problem with an input file raises VideoReadError whose message starts with the path and says
    what is wrong; problems with the caller's arguments raise ValueError.
  * Writers never leave a half-written file: they write a temp file in the destination directory and
    os.replace it over `path` only after the container is closed.

Odd sizes: H.264 in 4:2:0 (yuv420p, what every player supports) needs even H and W. write_mp4 uses
yuv420p when both are even and yuv444p (High 4:4:4 profile) otherwise, so any H, W >= 1 round-trips
with exactly the size written, no padding. Browsers and QuickTime do not play 4:4:4 H.264; pass even
sizes for videos meant to be shared.

Colour: RGB is converted to limited-range BT.709 Y'CbCr and the stream is tagged BT.709, so players
and read_video agree. On read, swscale uses each frame's own colour tags (untagged -> BT.601, as
FFmpeg does).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import numbers
import os
import secrets
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

__all__ = [
  "VideoReadError",
  "VideoNotFoundError",
  "iter_videos",
  "probe",
  "read_video",
  "write_gif",
  "write_mp4",
]

log = logging.getLogger(__name__)

# Demuxers that FFmpeg will happily open as a "video" but that are not one: still images (so a PNG
# renamed to .mp4 is rejected) and ANSI-art text (FFmpeg's `tty` demuxer opens any *.txt file as a
# 25 fps video stream).
_NOT_VIDEO_FORMATS = frozenset({"image2", "tty", "bin", "xbin", "adf", "idf", "ico"})

# AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic value 1 is BT.709 in all three
# enums; AVColorRange 1 is MPEG (limited, 16-235).
_BT709 = 1
_RANGE_MPEG = 1


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
  except av.error.InvalidDataError as e:
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


def _is_positive_number(x: Any) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool) and x > 0


def _frame_rgb(frame: Any, size: tuple[int, int] | None) -> np.ndarray:
  """Converts a decoded frame to upright uint8 RGB [H, W, 3], resized/cropped to `size` if given."""
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
    top, left = (rgb.shape[0] - size[0]) // 2, (rgb.shape[1] - size[1]) // 2
    rgb = rgb[top : top + size[0], left : left + size[1]]
  return np.ascontiguousarray(rgb)


def _check_read_args(fps: Any, size: Any, max_frames: Any) -> tuple[Fraction | None, Any, Any]:
  if fps is not None:
    if not _is_positive_number(fps):
      raise ValueError(f"fps must be a positive number or None, got {fps!r}")
    fps = Fraction(float(fps)).limit_denominator(1001)
  if size is not None:
    if (
      len(size) != 2
      or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
      or min(size) < 1
    ):
      raise ValueError(f"size must be (height, width) with positive ints, got {size!r}")
    size = (int(size[0]), int(size[1]))
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
) -> np.ndarray:
  """Decodes the first video stream of `path` into uint8 RGB [T, H, W, 3].

  Args:
    path: a video file in any container/codec FFmpeg knows (mp4, mkv, webm, mov, avi, gif, ...).
    fps: if given, resample in time to this rate: output frame k shows the source frame whose
      timestamp is nearest to k / fps seconds after the first frame (ties go to the earlier frame),
      for every k / fps before the end of the last source frame. Lower rates drop frames, higher
      rates repeat them; variable-frame-rate sources come out at a constant rate.
    size: if given, (H, W) of the output: scale keeping aspect ratio until the frame covers H x W,
      then crop the centre.
    max_frames: stop after this many output frames (decoding stops early too).

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
  limit = max_frames if max_frames is not None else float("inf")
  with _open_video(path) as (container, stream):
    p = os.fspath(path)
    out: list[np.ndarray] = []
    try:
      if fps is None:
        for frame, _, _ in _timed_frames(container, stream, p):
          out.append(_frame_rgb(frame, size))
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
            out.append(_frame_rgb(pick, size))
            k += 1
          if len(out) >= limit:
            break
          prev, prev_t, prev_end = frame, t, end
        else:
          # All frames decoded: the targets before the end of the last frame show it.
          while prev is not None and len(out) < limit and t0 + k / fps < prev_end:
            out.append(_frame_rgb(prev, size))
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


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _check_video(video: Any, fps: Any) -> np.ndarray:
  """Validates a [T, H, W, 3] uint8 clip and a frame rate; raises ValueError naming the problem."""
  if not isinstance(video, np.ndarray):
    raise ValueError(f"video must be a numpy array, got {type(video).__name__}")
  if video.dtype != np.uint8:
    raise ValueError(
      f"video must have dtype uint8, got {video.dtype} (convert floats in [0, 1] with "
      "np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8))"
    )
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f"video must have shape [T, H, W, 3], got {video.shape}")
  if min(video.shape[:3]) < 1:
    raise ValueError(f"video must have T, H, W >= 1, got shape {video.shape}")
  if not _is_positive_number(fps):
    raise ValueError(f"fps must be a positive number, got {fps!r}")
  return np.ascontiguousarray(video)


@contextlib.contextmanager
def _atomic_output(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temp path next to `path`; on clean exit renames it onto `path`, else deletes it."""
  final = os.path.abspath(os.fspath(path))
  directory = os.path.dirname(final)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{os.fspath(path)}: directory {directory} does not exist")
  while True:
    tmp = os.path.join(directory, f".{os.path.basename(final)}.{secrets.token_hex(4)}.tmp")
    try:
      # Created like open() would (0666 minus umask), unlike mkstemp's 0600.
      os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
      break
    except FileExistsError:
      continue
  try:
    yield tmp
    with open(tmp, "rb") as f:
      os.fsync(f.fileno())  # the data is on disk before the name points at it
    os.replace(tmp, final)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def _encode(container: Any, stream: Any, frames: Iterable[Any]) -> None:
  """Encodes `frames` (av.VideoFrame) into `stream`, flushes the encoder and muxes every packet."""
  for frame in frames:
    container.mux(stream.encode(frame))
  container.mux(stream.encode(None))


def _to_codec_frame(rgb: np.ndarray, pix_fmt: str, pts: int, time_base: Fraction) -> Any:
  """uint8 RGB [H, W, 3] -> av.VideoFrame in `pix_fmt`, limited-range BT.709, at pts * time_base."""
  frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
  frame = frame.reformat(
    format=pix_fmt,
    dst_colorspace="ITU709",
    dst_color_range="MPEG",
    interpolation="BICUBIC",  # only matters for 4:2:0 chroma downsampling
  )
  frame.pts, frame.time_base = pts, time_base
  return frame


def write_mp4(path: str | os.PathLike, video: np.ndarray, fps: int = 8, crf: int = 18) -> None:
  """Writes uint8 RGB [T, H, W, 3] as an H.264 MP4 (libx264), atomically.

  Any T, H, W >= 1 works; read_video(path) returns the same T, H, W. Even H and W give yuv420p
  (plays everywhere); odd H or W give yuv444p (High 4:4:4; not playable in browsers/QuickTime).
  Frame k has timestamp k / fps. The moov atom is placed first (faststart) so the file streams.

  Args:
    fps: frames per second (> 0; int, or float/Fraction such as 30000/1001).
    crf: x264 constant rate factor, 0 (lossless in Y'CbCr; RGB->YUV rounding remains) .. 51.

  Raises:
    ValueError: wrong dtype/shape/fps/crf.
    FileNotFoundError: the destination directory does not exist.
  """
  video = _check_video(video, fps)
  if not isinstance(crf, (int, np.integer)) or isinstance(crf, bool) or not 0 <= crf <= 51:
    raise ValueError(f"crf must be an int in [0, 51], got {crf!r}")
  _, h, w, _ = video.shape
  pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
  rate = Fraction(fps).limit_denominator(1001)
  with _atomic_output(path) as tmp:
    with av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
      stream = container.add_stream("libx264", rate=rate)
      stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
      cc = stream.codec_context
      cc.colorspace = cc.color_primaries = cc.color_trc = _BT709
      cc.color_range = _RANGE_MPEG
      stream.options = {"crf": str(int(crf)), "preset": "medium"}
      _encode(
        container,
        stream,
        (_to_codec_frame(f, pix_fmt, i, 1 / rate) for i, f in enumerate(video)),
      )


def _palettize(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Maps uint8 RGB [T, H, W, 3] to (indices uint8 [T, H, W], palette uint8 [256, 4] ARGB).

  One palette for the whole clip, so colours do not flicker between frames. Clips with <= 256
  distinct colours (rendered scenes, masks) are mapped exactly; others get a median-cut palette of
  256 colours and nearest-colour mapping on a 32^3 grid, without dithering (dither noise shimmers
  from frame to frame).
  """
  flat = video.reshape(-1, 3)
  keys = (flat[:, 0].astype(np.uint32) << 16) | (flat[:, 1].astype(np.uint32) << 8) | flat[:, 2]
  uniq, inverse = np.unique(keys, return_inverse=True)
  if len(uniq) <= 256:
    colors = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1)
    indices = inverse.astype(np.uint8)
  else:
    colors = _median_cut(flat, 256)
    # Nearest palette colour for the centre of each 8x8x8 cell of RGB space, then a table lookup.
    grid = np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (grid * 8 + 4).astype(np.float32)  # [32768, 3]
    pal = colors.astype(np.float32)  # [n, 3]
    # |c - p|^2 up to the per-row constant |c|^2; one [32768, n] matmul, not a [.., n, 3] cube.
    lut = ((pal**2).sum(1) - 2 * centres @ pal.T).argmin(1).astype(np.uint8)
    q = flat >> 3
    indices = lut[(q[:, 0].astype(np.int32) << 10) | (q[:, 1].astype(np.int32) << 5) | q[:, 2]]
  palette = np.zeros((256, 4), np.uint8)
  palette[:, 0] = 255  # opaque
  palette[: len(colors), 1:] = colors
  return indices.reshape(video.shape[:3]), palette


def _median_cut(pixels: np.ndarray, n_colors: int) -> np.ndarray:
  """Median-cut palette (uint8 [<= n_colors, 3]) of uint8 RGB pixels [N, 3]."""
  # A fixed-stride sample keeps this fast on long clips and deterministic.
  step = max(1, len(pixels) // 65536)

  def score(box: np.ndarray) -> int:
    # Split big, spread-out boxes first: widest channel range x pixel count.
    return int((box.max(0) - box.min(0)).max()) * len(box)

  boxes = [pixels[::step].astype(np.int32)]
  scores = [score(boxes[0])]
  while len(boxes) < n_colors:
    i = int(np.argmax(scores))
    if scores[i] <= 0:
      break  # every box is a single colour
    box = boxes.pop(i)
    scores.pop(i)
    ch = int((box.max(0) - box.min(0)).argmax())
    box = box[np.argsort(box[:, ch], kind="stable")]
    halves = [box[: len(box) // 2], box[len(box) // 2 :]]
    boxes += halves
    scores += [score(h) for h in halves]
  return np.stack([np.round(b.mean(0)) for b in boxes]).astype(np.uint8)


def write_gif(path: str | os.PathLike, video: np.ndarray, fps: int = 8) -> None:
  """Writes uint8 RGB [T, H, W, 3] as a looping GIF (PyAV's gif encoder), atomically.

  Colours are exact for clips with <= 256 distinct colours, else quantised to one 256-colour
  palette (see _palettize). GIF delays are whole centiseconds; FFmpeg alternates delays (e.g.
  12/13 cs at 8 fps) so the average rate is `fps`.

  Raises:
    ValueError: wrong dtype/shape/fps.
    FileNotFoundError: the destination directory does not exist.
  """
  video = _check_video(video, fps)
  _, h, w, _ = video.shape
  rate = Fraction(fps).limit_denominator(1001)
  indices, palette = _palettize(video)
  with _atomic_output(path) as tmp:
    with av.open(tmp, mode="w", format="gif", options={"loop": "0"}) as container:
      stream = container.add_stream("gif", rate=rate)
      stream.width, stream.height, stream.pix_fmt = w, h, "pal8"

      def frames() -> Iterator[Any]:
        for i, idx in enumerate(indices):
          frame = av.VideoFrame.from_ndarray((idx, palette), format="pal8")
          frame.pts, frame.time_base = i, 1 / rate
          yield frame

      _encode(container, stream, frames())
