"""Invisible video watermark: keyed spread spectrum in luma, tiled in space, the same every frame.

    mark = Watermark()                                   # WatermarkConfig() defaults
    marked = mark.embed(video, payload(model_id, gen_id)) # uint8 [T, H, W, 3] -> same shape
    result = mark.detect(read_video("out.mp4"))          # {"present", "payload", "confidence", ...}

How it works (a classic design, measured in benchmarks/watermark_robustness.py):
- A `tile` x `tile` pixel pattern is made of (tile/chip)^2 chips of chip x chip pixels. Chip
  values are a keyed +-1 mask times a sum of Walsh-Hadamard rows: row 0 is the *pilot* (always
  on, for detection and alignment), rows 1..n carry the payload bits and an 8-bit CRC as signs.
  Hadamard rows are orthogonal, so the bits do not interfere with each other or with the pilot.
  Payload + CRC are convolutionally coded (rate 1/2, soft Viterbi: sorax/safety/ecc.py).
- The pattern is smoothed, scaled to `strength` RMS luma levels, tiled over the frame and added
  equally to R, G and B (a pure luma change), the same in every frame: dropped or reordered
  frames do not matter and averaging over frames raises the signal above the content. With
  `follow_motion` the tile is rolled with the content's global pan instead (safety/motion.py),
  so a re-encoder's motion-compensated frames carry it; the detector undoes the same pan.
- Detection: average luma over frames, remove the content with a high-pass and clip outliers
  (edges), fold the frame modulo the tile (which makes a crop a mere cyclic shift), then find
  the shift by FFT cross-correlation with the pilot. A resize is handled by trying the
  `scales` a frame may have been resized by. The score is the pilot peak's z-score over all
  shifts and scales; the bits are the signs of the correlations with the payload rows there.

The key seeds the mask: without it the pattern looks like faint noise and cannot be read back.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage, special

from sorax.data.resample import resize_matrix
from sorax.safety import ecc
from sorax.safety.motion import global_motion

CRC_BITS = 8
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class WatermarkConfig:
  key: int = 0x5A0A                # seeds the chip mask (keep it private in a deployment)
  tile: int = 32                   # the pattern repeats every `tile` px (crop -> cyclic shift)
  chip: int = 2                    # px per chip: 256 chips a tile, still kept by H.264 and 0.5x
  strength: float = 2.8            # RMS luma change in levels (PSNR ~ 39 dB)
  pilot_share: float = 0.3         # fraction of the pattern's energy in the pilot
  payload_bits: int = 48           # 16-bit model id + 32-bit generation id
  smooth: float = 0.7              # Gaussian sigma (px) rounding the chips' corners
  median: int = 5                  # detector's content filter (px): keeps flats and edges
  highpass: float = 4.0            # sigma (px) of the blur the detector subtracts after it
  max_frames: int = 64             # frames the detector reads (evenly spaced)
  scales: tuple[float, ...] = (1.0, 0.5, 0.75, 0.9)  # resize factors the detector tries
  ecc: str = "conv"                # "conv": rate-1/2 convolutional code (ecc.py); "none"
  threshold: float = 6.0           # pilot score for "present" (clean videos: max 4.9 in 2000)
  # True: the mark moves with a global pan of the content (safety/motion.py), so H.264 P-frames
  # copy it along; the detector then undoes the same motion. Survives crf 28 on panning
  # textured clips, loses 0.5x on small ones (BUILD_NOTES). Embedder and detector must agree.
  follow_motion: bool = False

  @property
  def code_bits(self) -> int:
    """Signs the tile carries besides the pilot: payload + CRC, coded."""
    n = self.payload_bits + CRC_BITS
    return ecc.coded_length(n) if self.ecc == "conv" else n

  def __post_init__(self):
    n = (self.tile // self.chip) ** 2
    if self.tile % self.chip or n & (n - 1):
      raise ValueError(f"tile/chip must be a power of two per side, got tile={self.tile} "
                       f"chip={self.chip}")
    if self.ecc not in ("conv", "none"):
      raise ValueError(f"watermark ecc must be 'conv' or 'none', got {self.ecc!r}")
    if 1 + self.code_bits > n:
      raise ValueError(f"{self.payload_bits} payload bits + {CRC_BITS} CRC ({self.ecc} coded) + "
                       f"pilot need more than the {n} chips of a {self.tile}px tile")
    if not 0 < self.pilot_share < 1 or self.strength <= 0:
      raise ValueError(f"bad watermark config: pilot_share={self.pilot_share}, "
                       f"strength={self.strength}")


def crc8(bits: np.ndarray) -> np.ndarray:
  """CRC-8 (polynomial 0x07) of a bit array -> 8 bits."""
  reg = 0
  for b in np.asarray(bits, np.uint8):
    reg ^= int(b) << 7
    reg = ((reg << 1) ^ 0x07) & 0xFF if reg & 0x80 else (reg << 1) & 0xFF
  return np.array([(reg >> (7 - i)) & 1 for i in range(8)], np.uint8)


def payload(model_id: int, generation_id: int, bits: int = 48) -> np.ndarray:
  """Packs (model id: 16 bits, generation id: bits - 16) into a bit array, MSB first."""
  gen_bits = bits - 16
  if not 0 <= model_id < 1 << 16 or not 0 <= generation_id < 1 << gen_bits:
    raise ValueError(f"model_id must fit 16 bits and generation_id {gen_bits} bits, got "
                     f"{model_id}, {generation_id}")
  value = (model_id << gen_bits) | generation_id
  return np.array([(value >> (bits - 1 - i)) & 1 for i in range(bits)], np.uint8)


def unpack(bits: np.ndarray) -> dict[str, int]:
  value = int("".join(map(str, np.asarray(bits, np.uint8))), 2)
  gen_bits = len(bits) - 16
  return {"model_id": value >> gen_bits, "generation_id": value & ((1 << gen_bits) - 1)}


def _hadamard(n: int) -> np.ndarray:
  h = np.ones((1, 1), np.float32)
  while h.shape[0] < n:
    h = np.block([[h, h], [h, -h]])
  return h


def luma(video: np.ndarray) -> np.ndarray:
  """uint8 [T, H, W, 3] -> float32 [T, H, W] (BT.601 weights)."""
  return np.asarray(video, np.float32) @ _LUMA


class Watermark:
  """Embeds and detects one keyed watermark (see the module docstring)."""

  def __init__(self, cfg: WatermarkConfig | None = None):
    self.cfg = cfg = cfg or WatermarkConfig()
    side = cfg.tile // cfg.chip
    n = side * side
    rows = 1 + cfg.code_bits
    mask = np.random.default_rng(cfg.key).choice(np.float32([-1, 1]), n)
    # A keyed row order too, so the payload rows are not the low-sequency Hadamard rows.
    order = np.concatenate([[0], 1 + np.random.default_rng(cfg.key + 1).permutation(n - 1)])
    chips = _hadamard(n)[order[:rows]] * mask  # [rows, n]
    up = np.ones((cfg.chip, cfg.chip), np.float32)
    pat = np.stack([np.kron(c.reshape(side, side), up) for c in chips])  # [rows, tile, tile]
    pat = np.stack([ndimage.gaussian_filter(p, cfg.smooth, mode="wrap") for p in pat])
    self.patterns = pat / np.sqrt(np.mean(pat ** 2, axis=(1, 2), keepdims=True))
    # What the detector correlates with: the patterns through the detector's own high-pass.
    self.refs = np.stack([self._highpass(p, "wrap") for p in self.patterns])
    self.refs -= self.refs.mean(axis=(1, 2), keepdims=True)
    self._ref_fft = np.conj(np.fft.rfft2(self.refs))
    # High-passed rows are nearly, not exactly, orthogonal: the detector solves with the Gram.
    flat = self.refs.reshape(rows, -1).astype(np.float64)
    self._gram_inv = np.linalg.inv(flat @ flat.T)

  # ------------------------------------------------------------------------------ embed

  def pattern(self, bits: np.ndarray) -> np.ndarray:
    """The tile [tile, tile] (float32, RMS = strength) for payload bits."""
    cfg = self.cfg
    bits = np.asarray(bits, np.uint8)
    if bits.shape != (cfg.payload_bits,) or bits.max(initial=0) > 1:
      raise ValueError(f"payload must be {cfg.payload_bits} bits (0/1), got shape {bits.shape}")
    code = np.concatenate([bits, crc8(bits)])
    if cfg.ecc == "conv":
      code = ecc.encode(code)
    signs = 1.0 - 2.0 * code.astype(np.float32)
    a_pilot = math.sqrt(cfg.pilot_share)
    a_bit = math.sqrt((1 - cfg.pilot_share) / len(code))
    tile = a_pilot * self.patterns[0] + a_bit * np.tensordot(signs, self.patterns[1:], 1)
    return (tile * cfg.strength / np.sqrt(np.mean(tile ** 2))).astype(np.float32)

  def embed(self, video: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] (or one image [H, W, 3]) -> the same with the watermark added."""
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim not in (3, 4) or video.shape[-1] != 3:
      raise ValueError(f"watermark.embed needs uint8 [T, H, W, 3] or [H, W, 3], got "
                       f"{video.dtype} {video.shape}")
    h, w = video.shape[-3:-1]
    t, tile = self.cfg.tile, self.pattern(bits)
    reps = (-(-h // t), -(-w // t))
    if not (self.cfg.follow_motion and video.ndim == 4):
      delta = np.tile(tile, reps)[:h, :w, None]
      return np.clip(np.rint(video.astype(np.float32) + delta), 0, 255).astype(np.uint8)
    shifts = np.rint(global_motion(luma(video))).astype(int)  # [T, 2]
    out = np.empty_like(video)
    for k, (dy, dx) in enumerate(shifts):
      delta = np.tile(np.roll(tile, (dy, dx), (0, 1)), reps)[:h, :w, None]
      out[k] = np.clip(np.rint(video[k].astype(np.float32) + delta), 0, 255)
    return out

  # ------------------------------------------------------------------------------ detect

  def _highpass(self, x: np.ndarray, mode: str = "reflect") -> np.ndarray:
    return x - ndimage.gaussian_filter(x, self.cfg.highpass, mode=mode)

  def _fold(self, r: np.ndarray, wgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[H, W] residual and weights -> (weighted sum, weight), [tile, tile] each, over all
    tiles (positions the frame does not reach get weight 0)."""
    t = self.cfg.tile
    h, w = r.shape
    ph, pw = -(-h // t) * t, -(-w // t) * t
    acc = np.zeros((ph, pw), np.float32)
    cnt = np.zeros((ph, pw), np.float32)
    acc[:h, :w], cnt[:h, :w] = r * wgt, wgt
    return (acc.reshape(ph // t, t, pw // t, t).sum(axis=(0, 2)),
            cnt.reshape(ph // t, t, pw // t, t).sum(axis=(0, 2)))

  def residual(self, video: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 [T, H, W, 3] -> (r * weight, weight) float32 [T, H, W] each, and the content's
    displacement float [T, 2] (zeros unless `follow_motion`).

    Each frame's luma minus its median filter (which keeps flat regions and edges, the
    content, and removes fine texture, the watermark); outliers clipped; pixels weighted by
    the inverse of their local residual power (flat regions carry the mark cleanly, textured
    ones mostly carry content). `_aligned` averages frames that share a displacement and
    high-passes the average.
    """
    cfg = self.cfg
    y = self.luma_frames(video)
    shifts = global_motion(y) if cfg.follow_motion else np.zeros((len(y), 2))
    r = y - ndimage.median_filter(y, size=(1, cfg.median, cfg.median), mode="reflect")
    s = 1.4826 * np.median(np.abs(r), axis=(1, 2), keepdims=True) + 0.5
    return (*self.weighted(np.clip(r, -3 * s, 3 * s)), shifts)

  def luma_frames(self, video: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] or [H, W, 3] -> the luma float32 [T', H, W] the detector reads: at
    most `max_frames` frames, evenly spaced (enough to average the content out)."""
    y = luma(video if video.ndim == 4 else video[None])
    if len(y) > self.cfg.max_frames:
      y = y[np.linspace(0, len(y) - 1, self.cfg.max_frames).round().astype(int)]
    return y

  def weighted(self, r: np.ndarray, valid: np.ndarray | float = 1.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """A clipped residual [T, H, W] -> (r * weight, weight): each pixel weighted by the inverse
    of its local residual power (times `valid`, 0 where a content filter had nothing to say)."""
    cfg = self.cfg
    power = ndimage.gaussian_filter(r * r, (0, cfg.chip * 2, cfg.chip * 2), mode="reflect")
    wgt = valid / (power + cfg.strength ** 2)
    return r * wgt, wgt

  def _aligned(self, rw: np.ndarray, wgt: np.ndarray, shifts: np.ndarray, scale: float,
               averages: dict[bytes, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The folded residual [tile, tile] of a video resized by `scale`: frames grouped by their
    displacement (in original pixels), each group averaged, high-passed, resized back, folded
    and rolled back by its displacement, then all groups averaged with their weights. Static
    content is one group: the frames' average, folded. `averages` keeps each group's
    high-passed average across scales (static content: one, computed once)."""
    acc = cnt = 0.0
    keys = np.rint(shifts / scale).astype(int)
    for key in np.unique(keys, axis=0):
      sel = np.all(keys == key, axis=1)
      if sel.tobytes() not in averages:
        den = wgt[sel].sum(axis=0)
        averages[sel.tobytes()] = (self._highpass(rw[sel].sum(axis=0) / den), den)
      r, w = averages[sel.tobytes()]
      h, wd = (max(1, round(n / scale)) for n in r.shape)
      if (h, wd) != r.shape:
        mh, mw = resize_matrix(r.shape[0], h), resize_matrix(r.shape[1], wd)
        r, w = mh @ r @ mw.T, mh @ w @ mw.T
      a, c = self._fold(r, w)
      back = (-int(key[0]), -int(key[1]))
      acc, cnt = acc + np.roll(a, back, (0, 1)), cnt + np.roll(c, back, (0, 1))
    return acc / np.maximum(cnt, 1e-9)

  def detect(self, video: np.ndarray) -> dict[str, Any]:
    """-> {"present", "score" (the pilot's t statistic), "confidence" in [0, 1], "bits",
    "payload", "payload_valid" (the CRC matches), "bit_confidence", "scale", "shift"}."""
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim not in (3, 4) or video.shape[-1] != 3:
      raise ValueError(f"watermark.detect needs uint8 [T, H, W, 3] or [H, W, 3], got "
                       f"{video.dtype} {video.shape}")
    cfg = self.cfg
    rw, wgt, shifts = self.residual(video)
    rows, n_pix = len(self.refs), cfg.tile * cfg.tile
    dof = max(1, n_pix // 4 - rows)  # the folded residual is smooth: ~1/4 of its pixels are free
    best, averages = None, {}
    for s in cfg.scales:
      folded = self._aligned(rw, wgt, shifts, s, averages)
      folded -= folded.mean()
      corr = np.fft.irfft2(np.fft.rfft2(folded)[None] * self._ref_fft, s=folded.shape)
      # Least squares of the folded tile on all rows at every shift: coefficients, and the
      # energy left unexplained, which is the noise the pilot's t statistic is measured against
      # (the payload rows are part of the model, so they are not counted as noise).
      c = corr.reshape(rows, -1)                       # [rows, shifts]
      coef = self._gram_inv @ c                        # [rows, shifts]
      resid = np.maximum(np.sum(folded ** 2) - np.sum(c * coef, axis=0), 1e-9)
      t = coef[0] / np.sqrt(self._gram_inv[0, 0] * resid / dof)
      # In units of its own spread over all shifts: textured content correlates with itself,
      # which inflates every shift's t alike; the true shift stands out of that field.
      t = (t - np.median(t)) / (1.4826 * np.median(np.abs(t - np.median(t))) + 1e-9)
      k = int(np.argmax(t))
      if best is None or t[k] > best[0]:
        se = np.sqrt(np.diag(self._gram_inv) * resid[k] / dof)
        best = (float(t[k]), s, np.unravel_index(k, folded.shape), coef[:, k] / se)
    score, scale, (dy, dx), tvals = best
    soft = tvals[1:]
    code = ecc.decode(soft) if cfg.ecc == "conv" else (soft < 0).astype(np.uint8)
    bits, crc = code[:cfg.payload_bits], code[cfg.payload_bits:]
    n_hyp = len(cfg.scales) * n_pix
    # 1 - (Bonferroni p-value of the pilot peak under "no watermark"): ~0 on clean videos.
    p = min(1.0, n_hyp * 0.5 * special.erfc(score / math.sqrt(2)))
    present = score >= cfg.threshold
    return {
        "present": bool(present), "score": round(score, 3), "confidence": round(1.0 - p, 6),
        "threshold": cfg.threshold, "bits": "".join(map(str, bits)),
        "payload": unpack(bits) if present else None,
        "payload_valid": bool(present and np.array_equal(crc, crc8(bits))),
        "bit_confidence": round(float(np.mean(special.erf(np.abs(soft) / math.sqrt(2)))), 4),
        "scale": scale, "shift": [int(dy), int(dx)],
    }


def psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
