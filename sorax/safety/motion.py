"""Global motion of a video (a camera pan), for a watermark that moves with the content.

    d = global_motion(luma(video))   # float [T, 2]: frame k's content sits at p + d[k] (frame 0: p)

Why: H.264 codes a panning clip's P-frames as motion-compensated copies of earlier frames plus
a coarsely quantized residual. A mark that stays still while the content moves lives only in
that residual, which crf 28 zeroes; a mark that moves with the content is copied along with it
(benchmarks/watermark_robustness.py --follow-motion, BUILD_NOTES). Only a motion that most of the
frame follows counts: a small object moving over a flat background is not a pan, and the mark
stays still there.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _overlap(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
  """Slices (of frame a, of frame b) where b[p + d] and a[p] both exist."""
  return ((slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))),
          (slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx))))


def phase_peak(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """int [2] (dy, dx): the phase-correlation peak of luma frames a, b: float [H, W] (Hann
  windowed), the integer shift with b[p + d] ~ a[p] if the content moved as a whole."""
  h, w = a.shape
  win = np.outer(np.hanning(h), np.hanning(w))
  fa, fb = np.fft.fft2((a - a.mean()) * win), np.fft.fft2((b - b.mean()) * win)
  cross = fb * np.conj(fa)
  cross /= np.abs(cross) + 1e-6 * np.abs(cross).max() + 1e-12
  peak = np.unravel_index(np.argmax(np.fft.ifft2(cross).real), (h, w))
  return np.array([(peak[0] + h // 2) % h - h // 2, (peak[1] + w // 2) % w - w // 2])


def frame_shift(a: np.ndarray, b: np.ndarray, tau: float = 4.0,
                min_support: float = 0.25) -> np.ndarray:
  """float [2] (dy, dx) with b[p + d] ~ a[p], for luma frames a, b: float [H, W].

  Integer part: the phase-correlation peak, kept only if it makes at least `min_support` of the
  overlap match (to `tau` levels) that did not match unshifted. Sub-pixel part: one
  Lucas-Kanade step on the aligned overlap, kept only if it halves the remaining error of a
  frame that does change (a textured pan, not noise or an object's edge).
  """
  h, w = a.shape
  d = phase_peak(a, b)
  sa, sb = _overlap(h, w, int(d[0]), int(d[1]))
  A, B = a[sa], b[sb]
  if d.any() and np.mean((np.abs(B - a[sb]) > tau) & (np.abs(B - A) <= tau)) < min_support:
    d, A, B = np.zeros(2, int), a, b
  # Sub-pixel: B(p) ~ A(p - delta)  =>  B - A ~ -grad(A) . delta.
  As, Bs = ndimage.gaussian_filter(A, 1.0), ndimage.gaussian_filter(B, 1.0)
  gy, gx = np.gradient(As)
  it = Bs - As
  g = np.array([[np.sum(gy * gy), np.sum(gy * gx)], [np.sum(gx * gy), np.sum(gx * gx)]])
  if np.trace(g) < 1e-6 or np.linalg.cond(g) > 1e4:
    return d.astype(np.float64)
  delta = -np.linalg.solve(g, [np.sum(gy * it), np.sum(gx * it)])
  if np.abs(delta).max() > 0.75:
    return d.astype(np.float64)
  err_0 = np.mean(it[2:-2, 2:-2] ** 2)
  err_d = np.mean((Bs - ndimage.shift(As, delta, order=1, mode="nearest"))[2:-2, 2:-2] ** 2)
  if err_d > 0.5 * err_0 or err_0 < tau ** 2 * min_support:
    return d.astype(np.float64)
  return d + delta


def global_motion(y: np.ndarray) -> np.ndarray:
  """Luma float [T, H, W] -> float [T, 2]: each frame's content displacement from frame 0,
  summed over consecutive frames (0 everywhere for static content)."""
  y = np.asarray(y, np.float32)
  if y.ndim != 3:
    raise ValueError(f"global_motion needs luma [T, H, W], got shape {y.shape}")
  d = np.zeros((len(y), 2))
  for k in range(1, len(y)):
    d[k] = d[k - 1] + frame_shift(y[k - 1], y[k])
  return d
