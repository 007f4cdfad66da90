"""A contact sheet: one row of frames per video with its prompt above it, as one RGB image, so
that a person sees at a glance what a model made.

    sheet = contact_sheet(videos, prompts, notes=["all right", "x shape"])   # uint8 [H, W, 3]
"""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
NOTE_INK = (150, 30, 30)


def _font():
  from PIL import ImageFont  # noqa: PLC0415 (only the sheet needs an imaging library)
  return ImageFont.load_default()


def contact_sheet(videos: Sequence[np.ndarray], prompts: Sequence[str], *,
                  notes: Sequence[str] | None = None, frames: int = 9, scale: int = 3,
                  gap: int = 4, wrap: int = 100) -> np.ndarray:
  """videos: uint8 [T, H, W, 3] each (one size); prompts: one per video; notes: an optional
  short line per video (e.g. the oracle's verdict). Up to `frames` frames a row, evenly spread
  over the clip, each enlarged `scale` times (nearest neighbour: the pixels stay visible).
  -> uint8 [H', W', 3]."""
  from PIL import Image, ImageDraw  # noqa: PLC0415

  if len(videos) == 0:
    raise ValueError("contact_sheet needs at least one video")
  if len(prompts) != len(videos) or (notes is not None and len(notes) != len(videos)):
    raise ValueError(f"got {len(videos)} videos, {len(prompts)} prompts and "
                     f"{None if notes is None else len(notes)} notes")
  shape = np.asarray(videos[0]).shape
  for v in videos:
    v = np.asarray(v)
    if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3 or v.shape != shape:
      raise ValueError(f"contact_sheet wants uint8 [T, H, W, 3] videos of one shape, got "
                       f"{v.dtype} {v.shape} (first: {shape})")
  T, H, W, _ = shape
  idx = np.unique(np.linspace(0, T - 1, min(frames, T)).round().astype(int))
  fh, fw = H * scale, W * scale
  font = _font()
  line_h = 12
  lines = [textwrap.wrap(f"{i}: {p}", wrap) or [f"{i}:"] for i, p in enumerate(prompts)]
  row_w = len(idx) * (fw + gap) - gap
  width = max(row_w, 6 * wrap) + 2 * gap
  heights = [len(ls) * line_h + (line_h if notes else 0) + fh + 2 * gap for ls in lines]
  sheet = Image.new("RGB", (width, sum(heights) + gap), BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  y = gap
  for k, (video, ls) in enumerate(zip(videos, lines)):
    for line in ls:
      draw.text((gap, y), line, fill=INK, font=font)
      y += line_h
    if notes:
      draw.text((gap, y), notes[k], fill=NOTE_INK, font=font)
      y += line_h
    for j, t in enumerate(idx):
      frame = np.repeat(np.repeat(np.asarray(video[t]), scale, axis=0), scale, axis=1)
      sheet.paste(Image.fromarray(frame), (gap + j * (fw + gap), y))
    y += fh + 2 * gap
  return np.asarray(sheet, dtype=np.uint8)
