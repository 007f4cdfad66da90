"""Spacetime patches: video latents <-> token sequences with integer 3D positions.

Pure functions, no parameters. A latent ``[T, H, W, C]`` is cut into non-overlapping
``(pt, ph, pw)`` patches; each patch becomes one token of ``pt * ph * pw * C`` features, in
raster order over (t, h, w). The token's position is its integer patch coordinate
``(t_idx, h_idx, w_idx)``, which the DiT turns into 3D RoPE phases, so any duration,
resolution and aspect ratio maps onto the same model.

Feature order inside a token is ``(pt, ph, pw, C)``, C fastest (the layout used by
DiT/Wan-style linear patch embeddings).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

Patch = tuple[int, int, int]


def _check_divisible(shape: Sequence[int], patch: Patch) -> None:
  if len(shape) != 4:
    raise ValueError(f"latent must be [T, H, W, C], got shape {tuple(shape)}")
  if len(patch) != 3 or any(int(p) < 1 for p in patch):
    raise ValueError(f"patch must be three positive ints (pt, ph, pw), got {patch}")
  for name, n, p in zip("THW", shape[:3], patch):
    if n % p:
      raise ValueError(
          f"latent {name}={n} is not divisible by patch size {p} "
          f"(latent shape {tuple(shape)}, patch {tuple(patch)})")


def grid_shape(latent_shape: Sequence[int], patch: Patch) -> tuple[int, int, int]:
  """Number of patches along (t, h, w) for a latent of shape [T, H, W, C]."""
  _check_divisible(latent_shape, patch)
  return tuple(int(n // p) for n, p in zip(latent_shape[:3], patch))


def token_dim(channels: int, patch: Patch) -> int:
  return int(patch[0] * patch[1] * patch[2] * channels)


def positions(grid: Sequence[int]) -> np.ndarray:
  """Integer (t, h, w) coordinates of every patch, raster order. -> int32 [N, 3]."""
  t, h, w = (int(g) for g in grid)
  tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
  return np.stack([tt, hh, ww], axis=-1).reshape(-1, 3).astype(np.int32)


def patchify(latent: jax.Array, patch: Patch) -> tuple[jax.Array, np.ndarray]:
  """[T, H, W, C] -> (tokens [N, pt*ph*pw*C], positions int32 [N, 3])."""
  gt, gh, gw = grid_shape(latent.shape, patch)
  C = latent.shape[-1]
  pt, ph, pw = patch
  x = latent.reshape(gt, pt, gh, ph, gw, pw, C)
  x = x.transpose(0, 2, 4, 1, 3, 5, 6)  # [gt, gh, gw, pt, ph, pw, C]
  return x.reshape(gt * gh * gw, pt * ph * pw * C), positions((gt, gh, gw))


def unpatchify(tokens: jax.Array, latent_shape: Sequence[int], patch: Patch) -> jax.Array:
  """Exact inverse of `patchify`: tokens [N, P] -> latent [T, H, W, C]."""
  T, H, W, C = (int(s) for s in latent_shape)
  gt, gh, gw = grid_shape(latent_shape, patch)
  pt, ph, pw = patch
  n, p = tokens.shape[-2:]
  if n != gt * gh * gw or p != pt * ph * pw * C:
    raise ValueError(
        f"tokens of shape {tuple(tokens.shape)} do not fit latent {tuple(latent_shape)} "
        f"with patch {tuple(patch)}: expected [{gt * gh * gw}, {pt * ph * pw * C}]")
  x = tokens.reshape(gt, gh, gw, pt, ph, pw, C)
  x = x.transpose(0, 3, 1, 4, 2, 5, 6)  # [gt, pt, gh, ph, gw, pw, C]
  return x.reshape(T, H, W, C)


def patchify_batch(latents: jax.Array, patch: Patch) -> tuple[jax.Array, np.ndarray]:
  """[B, T, H, W, C] -> (tokens [B, N, P], positions int32 [B, N, 3])."""
  tokens = jax.vmap(lambda x: patchify(x, patch)[0])(latents)
  pos = positions(grid_shape(latents.shape[1:], patch))
  return tokens, np.broadcast_to(pos, (latents.shape[0],) + pos.shape)


def unpatchify_batch(tokens: jax.Array, latent_shape: Sequence[int], patch: Patch) -> jax.Array:
  """[B, N, P] -> [B, T, H, W, C] for a shared per-clip latent shape [T, H, W, C]."""
  return jax.vmap(lambda x: unpatchify(x, latent_shape, patch))(tokens)


def space_to_depth(video: jax.Array, factors: Patch) -> jax.Array:
  """[..., T, H, W, C] -> [..., T/ft, H/fs, W/fs, ft*fs*fs*C]: a lossless, parameter-free
  'latent' used until the learned VAE lands (same feature order as `patchify`)."""
  *lead, T, H, W, C = video.shape
  ft, fh, fw = factors
  for name, n, f in zip("THW", (T, H, W), factors):
    if n % f:
      raise ValueError(f"video {name}={n} is not divisible by factor {f} (shape {tuple(video.shape)})")
  x = video.reshape(*lead, T // ft, ft, H // fh, fh, W // fw, fw, C)
  nl = len(lead)
  perm = list(range(nl)) + [nl + i for i in (0, 2, 4, 1, 3, 5, 6)]
  return x.transpose(perm).reshape(*lead, T // ft, H // fh, W // fw, ft * fh * fw * C)


def depth_to_space(latent: jax.Array, factors: Patch) -> jax.Array:
  """Exact inverse of `space_to_depth`."""
  *lead, t, h, w, c = latent.shape
  ft, fh, fw = factors
  C = c // (ft * fh * fw)
  if C * ft * fh * fw != c:
    raise ValueError(f"latent channels {c} are not divisible by {ft}*{fh}*{fw}")
  x = latent.reshape(*lead, t, h, w, ft, fh, fw, C)
  nl = len(lead)
  perm = list(range(nl)) + [nl + i for i in (0, 3, 1, 4, 2, 5, 6)]
  return x.transpose(perm).reshape(*lead, t * ft, h * fh, w * fw, C)
