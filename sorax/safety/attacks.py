"""Edits a watermark must survive: the attacks of benchmarks/watermark_robustness.py and the tests.

Every attack maps a uint8 video [T, H, W, 3] (and a numpy Generator, for the random ones) to a
uint8 video, possibly of another size or length.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import numpy as np

from sorax.data.video_io import read_video, resize_crop
from sorax.data.video_write import write_mp4

Attack = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def h264(video: np.ndarray, crf: int) -> np.ndarray:
  """Round trip through an H.264 mp4 (libx264, yuv420p) at `crf`, as another tool would."""
  with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "attack.mp4")
    write_mp4(path, video, crf=crf)
    return read_video(path)


def downscale(video: np.ndarray, factor: float) -> np.ndarray:
  _, h, w, _ = video.shape
  return resize_crop(video, max(1, round(h * factor)), max(1, round(w * factor)))


def crop(video: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
  """Cuts `fraction` of the height and of the width away, at a random place (no resize)."""
  _, h, w, _ = video.shape
  ch, cw = max(1, round(h * (1 - fraction))), max(1, round(w * (1 - fraction)))
  y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
  return video[:, y:y + ch, x:x + cw]


def drop_frames(video: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
  keep = max(1, round(len(video) * (1 - fraction)))
  return video[np.sort(rng.choice(len(video), keep, replace=False))]


def brightness(video: np.ndarray, gain: float, offset: float) -> np.ndarray:
  return np.clip(np.rint(video.astype(np.float32) * gain + offset), 0, 255).astype(np.uint8)


ATTACKS: dict[str, Attack] = {
    "none": lambda v, rng: v,
    "h264_crf23": lambda v, rng: h264(v, 23),
    "h264_crf28": lambda v, rng: h264(v, 28),
    "downscale_0.5": lambda v, rng: downscale(v, 0.5),
    "crop_10": lambda v, rng: crop(v, 0.10, rng),
    "drop_frames_33": lambda v, rng: drop_frames(v, 1 / 3, rng),
    "brighter": lambda v, rng: brightness(v, 1.1, 15.0),
    "darker": lambda v, rng: brightness(v, 0.85, -10.0),
    # Not in the list; reported to show where the design stops.
    "crop_10+crf23": lambda v, rng: h264(crop(v, 0.10, rng), 23),
    "downscale_0.5+crf28": lambda v, rng: h264(downscale(v, 0.5), 28),
}
