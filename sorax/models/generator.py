"""The text-to-video velocity model: text encoder + DiT, trained together."""

from __future__ import annotations

import dataclasses

import jax
from flax import nnx

from sorax.models.dit import DiT, DiTConfig
from sorax.models.text import TextEncoder


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  dit: DiTConfig
  vocab_size: int
  text_depth: int = 2
  text_heads: int = 4


class Generator(nnx.Module):
  def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    self.text = TextEncoder(cfg.vocab_size, cfg.dit.text_width, cfg.text_depth, cfg.text_heads,
                            rngs=rngs, dtype=cfg.dit.dtype, param_dtype=cfg.dit.param_dtype)
    self.dit = DiT(cfg.dit, rngs=rngs)

  def encode_text(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    return self.text(ids, mask)

  def __call__(self, x: jax.Array, positions: jax.Array, t: jax.Array, ids: jax.Array,
               mask: jax.Array, token_mask: jax.Array | None = None) -> jax.Array:
    """x [B, N, P], positions [B, N, 3], t [B], ids/mask [B, L] -> velocity [B, N, P]."""
    return self.dit(x, positions, t, self.text(ids, mask), mask, token_mask)
