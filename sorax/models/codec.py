"""Latent codecs: video pixels <-> the latent the DiT works on.

Training and sampling only see `encode`/`decode`/`latent_shape`/`factors`/`channels` of a codec:
the learned causal VAE ("vae", sorax/models/vae_codec.py) and the parameter-free, lossless
`space_to_depth` (a baseline, and the codec for tests that must not depend on trained weights).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sorax.patchify import depth_to_space, space_to_depth


@dataclasses.dataclass(frozen=True)
class SpaceToDepthCodec:
  """Lossless pixel-unshuffle: [B, T, H, W, 3] in [-1, 1] -> [B, T/ft, H/fs, W/fs, 3*ft*fs*fs].

  `scale` brings the latent to roughly unit variance, the scale flow matching expects of data.

  `causal` (with temporal > 1): like the causal VAE, frame 0 stands alone and later frames are
  folded in groups, so T = 1 + temporal * k frames give 1 + k latent frames: frame 0 is
  repeated `temporal` times before folding, and decoding keeps the last copy. Still lossless.
  """
  temporal: int = 1
  spatial: int = 4
  scale: float = 1.5
  causal: bool = False

  @property
  def factors(self) -> tuple[int, int, int]:
    return (self.temporal, self.spatial, self.spatial)

  @property
  def channels(self) -> int:
    return 3 * self.temporal * self.spatial * self.spatial

  def _pad(self) -> int:
    """Copies of frame 0 put in front before folding (causal mode)."""
    return self.temporal - 1 if self.causal else 0

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    ft, fh, fw = self.factors
    for name, n, f in (("frames", frames + self._pad(), ft), ("height", height, fh),
                       ("width", width, fw)):
      if n % f:
        need = (f"1 + {ft}*k" if self.causal else f"a multiple of {f}") if name == "frames" \
            else f"a multiple of {f}"
        raise ValueError(f"{name}={n - (self._pad() if name == 'frames' else 0)} is not {need} "
                         f"(the codec's factor {f})")
    return ((frames + self._pad()) // ft, height // fh, width // fw, self.channels)

  def encode(self, video: jax.Array) -> jax.Array:
    """video [B, T, H, W, 3] in [-1, 1] -> latent [B, t, h, w, c]."""
    video = video.astype(jnp.float32)
    if self._pad():
      video = jnp.concatenate([jnp.repeat(video[:, :1], self._pad(), axis=1), video], axis=1)
    return space_to_depth(video, self.factors) * self.scale

  def fold(self, pixel_map: jax.Array) -> jax.Array:
    """A per-pixel map [B, T, H, W, 3] in the latent's layout (unscaled), e.g. loss weights."""
    return self.encode(pixel_map) / self.scale

  def decode(self, latent: jax.Array) -> jax.Array:
    video = depth_to_space(latent / self.scale, self.factors)
    return video[:, self._pad():]

  # The latent cache stores `raw_encode` output; `normalize` maps it to what `encode` returns.
  raw_encode = encode

  def normalize(self, latent: jax.Array) -> jax.Array:
    return latent


def _vae_codec(checkpoint: str = ""):
  from sorax.models.vae_codec import load_vae  # noqa: PLC0415 (loads weights: only on demand)
  return load_vae(checkpoint)


CODECS = {"space_to_depth": SpaceToDepthCodec, "vae": _vae_codec}
# The config keys each codec takes (a codec config holds the keys of all codecs, so that
# `--config.codec.name=vae` is a one-flag switch).
CODEC_KEYS = {"space_to_depth": ("temporal", "spatial", "scale", "causal"), "vae": ("checkpoint",)}


def make_codec(name: str, **kwargs):
  if name not in CODECS:
    raise ValueError(f"unknown codec {name!r}; choose from {sorted(CODECS)}")
  return CODECS[name](**kwargs)


def to_pixels(video: jax.Array) -> jax.Array:
  """[-1, 1] float -> uint8."""
  return jnp.clip(jnp.round((video + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def from_pixels(video) -> jax.Array:
  """uint8 -> [-1, 1] float32."""
  return jnp.asarray(video, jnp.float32) / 127.5 - 1.0
