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
  """
  temporal: int = 1
  spatial: int = 4
  scale: float = 1.5

  @property
  def factors(self) -> tuple[int, int, int]:
    return (self.temporal, self.spatial, self.spatial)

  @property
  def channels(self) -> int:
    return 3 * self.temporal * self.spatial * self.spatial

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    ft, fh, fw = self.factors
    for name, n, f in (("frames", frames, ft), ("height", height, fh), ("width", width, fw)):
      if n % f:
        raise ValueError(f"{name}={n} is not a multiple of the codec's factor {f}")
    return (frames // ft, height // fh, width // fw, self.channels)

  def encode(self, video: jax.Array) -> jax.Array:
    return space_to_depth(video.astype(jnp.float32), self.factors) * self.scale

  def decode(self, latent: jax.Array) -> jax.Array:
    return depth_to_space(latent / self.scale, self.factors)

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
CODEC_KEYS = {"space_to_depth": ("temporal", "spatial", "scale"), "vae": ("checkpoint",)}


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
