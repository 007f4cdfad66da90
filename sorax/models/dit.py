"""The diffusion transformer over spacetime patches.

Each block: adaLN-zero modulated self-attention (3D RoPE over (t, h, w) patch coordinates,
QK-norm), cross-attention to text tokens, adaLN-zero modulated MLP. Blocks are created with
`nnx.vmap` (parameters stacked on a leading `layers` axis) and run as one scanned block under a
named remat policy (a `jax.lax.scan` over the stacked block state), so compile time does not
grow with depth.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
from flax import nnx

from sorax.models import layers
from sorax.parallel.mesh import constrain

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class DiTConfig:
  token_dim: int               # pt * ph * pw * latent channels
  width: int = 256
  depth: int = 4
  heads: int = 4
  mlp_ratio: float = 4.0
  text_width: int = 128
  qk_norm: bool = True
  rope_theta: float = 10000.0
  dtype: str = "float32"       # compute dtype ("bfloat16" on GPU/TPU)
  param_dtype: str = "float32"
  attention: str | None = None  # jax.nn.dot_product_attention implementation: None|"xla"|"cudnn"
  scan_layers: bool = True
  remat: str = "none"          # key of REMAT_POLICIES
  # Hidden width of a per-token MLP added to the linear output head (0: linear head only). The
  # linear head maps every token into one fixed `width`-dimensional subspace of patch space, and
  # with x0-prediction the last sampler step returns that output, so sharp edges at arbitrary
  # places inside a patch cannot be drawn (the 8x8-pixel blocks of BUILD_NOTES, issue 8). Its
  # output layer starts at zero, so adding it to a trained model keeps that model's function.
  head_hidden: int = 0
  # Absolute position features (layers.position_features: canvas fractions and the frame index)
  # through a zero-initialised projection added to the patch embedding, beside RoPE. Zero at
  # init, so a trained model without it keeps its function when it is added (train.init_from
  # with train.init_allow_fresh).
  abs_pos: bool = False
  # The mean of the text tokens (over the mask), through a zero-initialised projection, added
  # to the timestep embedding that drives every block's adaLN (as SD3 adds its pooled text).
  # Cross-attention alone reaches a block's tokens only after its self-attention; measured on
  # v7/v10, samples with the same noise and prompts differing only in "left"/"right" move the
  # same way (displacement correlation 0.99): the DiT takes the direction from the noise, not
  # the word (BUILD_NOTES, issue 8). Zero at init: a trained model keeps its function.
  pooled_text: bool = False
  # Options that a DiT imported from Wan2.1 (sorax/export/wan.py) needs; the defaults are
  # sorax's own. mlp_dim: the MLP's hidden width (0: width * mlp_ratio). attn_bias: biases on
  # the attention projections. qk_norm_over: "head" or "width" (RMS over all heads at once).
  # head_modulation: "adaln" (final shift/scale = Linear(silu(c))) or "bias" (c plus a learned
  # [2, width] table, Wan2.1's Head).
  mlp_dim: int = 0
  attn_bias: bool = False
  qk_norm_over: str = "head"
  head_modulation: str = "adaln"

  def __post_init__(self):
    if self.head_modulation not in ("adaln", "bias"):
      raise ValueError(f"unknown head_modulation {self.head_modulation!r}; choose from "
                       "['adaln', 'bias']")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"unknown remat policy {self.remat!r}; choose from {list(REMAT_POLICIES)}")
    if self.width % self.heads:
      raise ValueError(f"DiT width {self.width} is not divisible by heads {self.heads}")


class DiTBlock(nnx.Module):
  def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
    d, dt, pdt = cfg.width, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    kw = dict(dtype=dt, param_dtype=pdt)
    akw = dict(qk_norm=cfg.qk_norm, qk_norm_over=cfg.qk_norm_over, bias=cfg.attn_bias,
               implementation=cfg.attention, rngs=rngs, **kw)
    self.norm1 = layers.layer_norm(d, affine=False, rngs=rngs, **kw)
    self.attn = layers.Attention(d, cfg.heads, **akw)
    self.norm_x = layers.layer_norm(d, rngs=rngs, **kw)
    self.cross = layers.Attention(d, cfg.heads, **akw)
    self.norm2 = layers.layer_norm(d, affine=False, rngs=rngs, **kw)
    self.mlp = layers.MLP(d, cfg.mlp_dim or int(d * cfg.mlp_ratio), rngs=rngs, **kw)
    # adaLN-zero: every block starts as the identity.
    self.modulation = layers.dense(d, 6 * d, ("embed", "mlp"), zero_init=True, rngs=rngs, **kw)

  def __call__(self, x, c, rope, text, text_mask, token_mask):
    """x [B, N, D]; c [B, 1, D] (one timestep per clip) or [B, N, D] (per token) conditioning;
    rope [B, N, K/2]; text [B, L, D]; masks bool."""
    mod = self.modulation(jax.nn.silu(c))
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
    h = self.norm1(x) * (1 + scale1) + shift1
    x = x + gate1 * self.attn(h, rope=rope, mask=token_mask)
    x = x + self.cross(self.norm_x(x), context=text, mask=text_mask)
    h = self.norm2(x) * (1 + scale2) + shift2
    x = x + gate2 * self.mlp(h)
    return constrain(x, ("act_batch", "act_length", "act_embed"))


class DiT(nnx.Module):
  """Velocity model v(x_t, t, text) on patch tokens."""

  def __init__(self, cfg: DiTConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    d, dt, pdt = cfg.width, jnp.dtype(cfg.dtype), jnp.dtype(cfg.param_dtype)
    kw = dict(dtype=dt, param_dtype=pdt)
    self.patch_embed = layers.dense(cfg.token_dim, d, ("patch", "embed"), rngs=rngs, **kw)
    self.time_in = layers.dense(256, d, ("freq", "embed"), rngs=rngs, **kw)
    if cfg.abs_pos:
      self.pos_embed = layers.dense(6 * layers.POS_FREQS, d, ("freq", "embed"), zero_init=True,
                                    rngs=rngs, **kw)
    self.time_out = layers.dense(d, d, ("embed", "mlp"), rngs=rngs, **kw)
    self.text_in = layers.dense(cfg.text_width, d, ("text_embed", "embed"), rngs=rngs, **kw)
    self.text_out = layers.dense(d, d, ("embed", "mlp"), rngs=rngs, **kw)
    if cfg.pooled_text:
      self.text_pool = layers.dense(cfg.text_width, d, ("text_embed", "embed"), zero_init=True,
                                    rngs=rngs, **kw)

    if cfg.scan_layers:
      @nnx.split_rngs(splits=cfg.depth)
      @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
      def make_blocks(r):
        return DiTBlock(cfg, rngs=r)
      self.blocks = make_blocks(rngs)
    else:
      self.blocks = nnx.List([DiTBlock(cfg, rngs=rngs) for _ in range(cfg.depth)])

    self.final_norm = layers.layer_norm(d, affine=False, rngs=rngs, **kw)
    if cfg.head_modulation == "adaln":
      self.final_mod = layers.dense(d, 2 * d, ("embed", "mlp"), zero_init=True, rngs=rngs, **kw)
    else:  # Wan2.1's Head: shift, scale = c + table
      self.head_mod = nnx.Param(layers.partitioned(nnx.initializers.zeros_init(), (
          None, "embed"))(rngs.params(), (2, d), pdt))
    self.final_out = layers.dense(d, cfg.token_dim, ("embed", "patch"), zero_init=True, rngs=rngs,
                                  **kw)
    if cfg.head_hidden:
      self.head_in = layers.dense(d, cfg.head_hidden, ("embed", "mlp"), rngs=rngs, **kw)
      self.head_out = layers.dense(cfg.head_hidden, cfg.token_dim, ("mlp", "patch"),
                                   zero_init=True, rngs=rngs, **kw)

  def __call__(self, x: jax.Array, positions: jax.Array, t: jax.Array, text: jax.Array,
               text_mask: jax.Array, token_mask: jax.Array | None = None) -> jax.Array:
    """x [B, N, P] noisy tokens; positions int [B, N, 3]; t [B] in [0, 1], or [B, N] per token
    (masked conditioning: given tokens have t = 0, sorax/diffusion/conditioning.py);
    text [B, L, text_width] with text_mask bool [B, L]; token_mask bool [B, N] marks real
    (non-padding) tokens. -> velocity [B, N, P] (float32)."""
    cfg = self.cfg
    x = self.patch_embed(x)
    if cfg.abs_pos:
      x = x + self.pos_embed(layers.position_features(positions, token_mask).astype(x.dtype))
    x = constrain(x, ("act_batch", "act_length", "act_embed"))
    t = t[:, None] if t.ndim == 1 else t  # [B, 1] or [B, N]: modulation broadcasts over tokens
    c = self.time_out(jax.nn.silu(self.time_in(layers.timestep_embedding(t, 256))))
    if cfg.pooled_text:  # [B, L, text_width] -> [B, 1, D], the masked mean of the text tokens
      m = text_mask[..., None].astype(jnp.float32)
      pooled = (text.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
      c = c + self.text_pool(pooled.astype(x.dtype))[:, None, :]
    txt = self.text_out(jax.nn.gelu(self.text_in(text), approximate=True))
    rope = layers.rope_angles(positions, cfg.width // cfg.heads, cfg.rope_theta)

    policy = REMAT_POLICIES[cfg.remat]

    def run_block(block_def, block_state, h):
      # Pure in (state, h): safe under any outer jit/scan, and remat-able with jax.checkpoint.
      return nnx.merge(block_def, block_state)(h, c, rope, txt, text_mask, token_mask)

    if cfg.remat != "none":
      run_block = jax.checkpoint(run_block, policy=policy, static_argnums=(0,),
                                 prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      block_def, stacked = nnx.split(self.blocks)
      x, _ = jax.lax.scan(lambda h, st: (run_block(block_def, st, h), None), x, stacked)
    else:
      for block in self.blocks:
        x = run_block(*nnx.split(block), x)

    if cfg.head_modulation == "adaln":
      shift, scale = jnp.split(self.final_mod(jax.nn.silu(c)), 2, axis=-1)
    else:
      table = self.head_mod[...].astype(c.dtype)
      shift, scale = c + table[0], c + table[1]
    x = self.final_norm(x) * (1 + scale) + shift
    out = self.final_out(x)
    if cfg.head_hidden:
      out = out + self.head_out(jax.nn.gelu(self.head_in(x), approximate=True))
    return out.astype(jnp.float32)
