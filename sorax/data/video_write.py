"""Encode uint8 RGB clips to MP4 and GIF files with PyAV (FFmpeg), atomically.

Public API (also re-exported by sorax.data.video_io):
  write_mp4(path, video, fps=8, crf=18)      H.264, atomic
  write_gif(path, video, fps=8)              palette GIF, atomic

Conventions:
  * Input arrays are uint8 RGB, frames-first: [T, H, W, 3]. Problems with the caller's arguments
    raise ValueError; a missing destination directory raises FileNotFoundError.
  * Writers never leave a half-written file: they write a temp file in the destination directory and
    os.replace it over `path` only after the container is closed.

Odd sizes: H.264 in 4:2:0 (yuv420p, what every player supports) needs even H and W. write_mp4 uses
yuv420p when both are even and yuv444p (High 4:4:4 profile) otherwise, so any H, W >= 1 round-trips
with exactly the size written, no padding. Browsers and QuickTime do not play 4:4:4 H.264; pass even
sizes for videos meant to be shared.

Colour: RGB is converted to limited-range BT.709 Y'CbCr and the stream is tagged BT.709, so players
and sorax.data.video_io.read_video agree.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

import av
import numpy as np

from sorax.data.resample import is_positive_number

__all__ = [
  "write_gif",
  "write_png",
  "write_mp4",
]

# AVColorSpace / AVColorPrimaries / AVColorTransferCharacteristic value 1 is BT.709 in all three
# enums; AVColorRange 1 is MPEG (limited, 16-235).
_BT709 = 1
_RANGE_MPEG = 1


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
  if not is_positive_number(fps):
    raise ValueError(f"fps must be a positive number, got {fps!r}")
  return np.ascontiguousarray(video)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
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
  with atomic_output(path) as tmp:
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
  with atomic_output(path) as tmp:
    with av.open(tmp, mode="w", format="gif", options={"loop": "0"}) as container:
      stream = container.add_stream("gif", rate=rate)
      stream.width, stream.height, stream.pix_fmt = w, h, "pal8"

      def frames() -> Iterator[Any]:
        for i, idx in enumerate(indices):
          frame = av.VideoFrame.from_ndarray((idx, palette), format="pal8")
          frame.pts, frame.time_base = i, 1 / rate
          yield frame

      _encode(container, stream, frames())


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """uint8 [H, W, 3] -> an RGB PNG (zlib only, no imaging library); atomic."""
  import struct  # noqa: PLC0415
  import zlib  # noqa: PLC0415

  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
    raise ValueError(f"write_png wants uint8 [H, W, 3], got {image.dtype} {image.shape}")
  h, w, _ = image.shape

  def chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

  rows = b"".join(b"\x00" + image[i].tobytes() for i in range(h))  # filter 0 per row
  blob = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
          + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))
  with atomic_output(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(blob)
