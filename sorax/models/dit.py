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


def palette_x0(logits: jax.Array, palette) -> jax.Array:
  """The palette head's clean estimate: logits [B, N, pixels, K] over the K palette colours
  ([K, C]) -> every pixel's expected colour, flattened per token to [B, N, pixels * C]."""
  pal = jnp.asarray(palette, jnp.float32)
  x0 = jax.nn.softmax(logits.astype(jnp.float32), axis=-1) @ pal
  return x0.reshape(*logits.shape[:-2], -1)


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
  # Attribute slots (0: off): this many learned queries read the text (SlotReader, a small
  # Perceiver), the slots join the text tokens as extra cross-attention keys, and their
  # concatenation (ordered: slot k is the k-th object named, the last the scene) drives every
  # block's adaLN through a zero-initialised projection. Why: a caption names up to three
  # objects, and which words belong to which object had to be learned by the DiT from the
  # diffusion loss alone; two- and three-object prompts failed far more than one-object ones
  # (BUILD_NOTES, issue 8). `slot_classes` sizes the attribute heads that the training loss can
  # read each slot back through (sorax/train/step.py slot_loss); the heads are not used to sample.
  slots: int = 0
  slot_depth: int = 2
  slot_classes: tuple[int, ...] = ()
  # Palette head (empty: off): for data whose every pixel is one of K known colours (the
  # world), each pixel of a token gets K logits and the output is the expected colour,
  # sum_k softmax_k * palette[k], i.e. x0-prediction through a categorical posterior
  # (Dieleman et al. 2022, CDCD's score interpolation). The training loss can then add the
  # cross-entropy of each pixel's true colour (sorax/train/step.py), which is well scaled for
  # rare object pixels where the squared error is not. palette: K colours in latent units, each
  # of the codec's per-pixel channels (token_dim must be a multiple of that).
  palette: tuple[tuple[float, ...], ...] = ()
  # Self-conditioning (Chen et al. 2022, "Analog Bits"; used by RIN and CDCD): the DiT also
  # reads a previous clean estimate x0_prev [B, N, P] (zeros when there is none) through a
  # zero-initialised, bias-free projection added to the patch embedding. Training feeds the
  # model's own estimate (no gradient) on a share of steps; samplers pass the last step's.
  self_cond: bool = False
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
    if self.palette and (self.token_dim % len(self.palette[0]) or self.head_hidden):
      raise ValueError(f"palette head: token_dim {self.token_dim} must be a multiple of the "
                       f"palette's {len(self.palette[0])} channels, and head_hidden must be 0")

  @property
  def out_dim(self) -> int:
    """Features the output head makes per token: token_dim, or K logits per pixel."""
    if not self.palette:
      return self.token_dim
    return self.token_dim // len(self.palette[0]) * len(self.palette)


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


class SlotBlock(nnx.Module):
  def __init__(self, d: int, heads: int, *, rngs: nnx.Rngs, **kw):
    self.norm1 = layers.layer_norm(d, rngs=rngs, **kw)
    self.attn = layers.Attention(d, heads, rngs=rngs, **kw)
    self.norm2 = layers.layer_norm(d, rngs=rngs, **kw)
    self.cross = layers.Attention(d, heads, rngs=rngs, **kw)
    self.norm3 = layers.layer_norm(d, rngs=rngs, **kw)
    self.mlp = layers.MLP(d, 4 * d, rngs=rngs, **kw)

  def __call__(self, s, text, text_mask):
    s = s + self.attn(self.norm1(s))
    s = s + self.cross(self.norm2(s), context=text, mask=text_mask)
    return s + self.mlp(self.norm3(s))


class SlotReader(nnx.Module):
  """K learned queries read the text: slots [B, K, D] from text [B, L, D] (mask bool [B, L]).
  Self-attention among the slots lets each claim a different object."""

  def __init__(self, num_slots: int, d: int, heads: int, depth: int, *, rngs: nnx.Rngs, **kw):
    init = layers.partitioned(nnx.initializers.normal(0.02), (None, "embed"))
    self.queries = nnx.Param(init(rngs.params(), (num_slots, d), kw["param_dtype"]))
    self.blocks = nnx.List([SlotBlock(d, heads, rngs=rngs, **kw) for _ in range(depth)])
    self.norm = layers.layer_norm(d, rngs=rngs, **kw)

  def __call__(self, text: jax.Array, text_mask: jax.Array) -> jax.Array:
    s = jnp.broadcast_to(self.queries[...].astype(text.dtype)[None],
                         (text.shape[0],) + self.queries.shape)
    for block in self.blocks:
      s = block(s, text, text_mask)
    return self.norm(s)


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
    if cfg.slots:
      self.slot_reader = SlotReader(cfg.slots, d, cfg.heads, cfg.slot_depth, rngs=rngs, **kw)
      self.slot_pool = layers.dense(cfg.slots * d, d, ("mlp", "embed"), zero_init=True,
                                    rngs=rngs, **kw)
      if cfg.slot_classes:
        self.slot_head = layers.dense(d, sum(cfg.slot_classes), ("embed", None), rngs=rngs,
                                      **kw)

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
    self.final_out = layers.dense(d, cfg.out_dim, ("embed", "patch"), zero_init=True, rngs=rngs,
                                  **kw)
    if cfg.self_cond:
      self.self_embed = layers.dense(cfg.token_dim, d, ("patch", "embed"), zero_init=True,
                                     use_bias=False, rngs=rngs, **kw)
    if cfg.head_hidden:
      self.head_in = layers.dense(d, cfg.head_hidden, ("embed", "mlp"), rngs=rngs, **kw)
      self.head_out = layers.dense(cfg.head_hidden, cfg.token_dim, ("mlp", "patch"),
                                   zero_init=True, rngs=rngs, **kw)

  def _text(self, text: jax.Array) -> jax.Array:
    """Text encoder features [B, L, text_width] -> the DiT's text tokens [B, L, D]."""
    return self.text_out(jax.nn.gelu(self.text_in(text), approximate=True))

  def slot_logits(self, text: jax.Array, text_mask: jax.Array) -> jax.Array:
    """The attribute heads on the slots: [B, L, text_width] text -> [B, K, sum(slot_classes)]
    logits (training's slot loss; sampling never needs them)."""
    if not (self.cfg.slots and self.cfg.slot_classes):
      raise ValueError("slot_logits needs model.slots > 0 and slot_classes")
    return self.slot_head(self.slot_reader(self._text(text), text_mask)).astype(jnp.float32)

  def __call__(self, x: jax.Array, positions: jax.Array, t: jax.Array, text: jax.Array,
               text_mask: jax.Array, token_mask: jax.Array | None = None, *,
               return_logits: bool = False, x0_prev: jax.Array | None = None):
    """x [B, N, P] noisy tokens; positions int [B, N, 3]; t [B] in [0, 1], or [B, N] per token
    (masked conditioning: given tokens have t = 0, sorax/diffusion/conditioning.py);
    text [B, L, text_width] with text_mask bool [B, L]; token_mask bool [B, N] marks real
    (non-padding) tokens. -> velocity (or x0) [B, N, P] float32; with return_logits, also the
    palette head's logits [B, N, P / C, K] (None without a palette). x0_prev [B, N, P]: the
    self-conditioning input (model.self_cond; None = zeros)."""
    cfg = self.cfg
    h = self.patch_embed(x)
    if cfg.self_cond and x0_prev is not None:
      h = h + self.self_embed(x0_prev.astype(h.dtype))
    x = h
    if cfg.abs_pos:
      x = x + self.pos_embed(layers.position_features(positions, token_mask).astype(x.dtype))
    x = constrain(x, ("act_batch", "act_length", "act_embed"))
    t = t[:, None] if t.ndim == 1 else t  # [B, 1] or [B, N]: modulation broadcasts over tokens
    c = self.time_out(jax.nn.silu(self.time_in(layers.timestep_embedding(t, 256))))
    if cfg.pooled_text:  # [B, L, text_width] -> [B, 1, D], the masked mean of the text tokens
      m = text_mask[..., None].astype(jnp.float32)
      pooled = (text.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
      c = c + self.text_pool(pooled.astype(x.dtype))[:, None, :]
    txt = self._text(text)
    if cfg.slots:  # slots: extra keys first, and the scene vector into the adaLN
      slots = self.slot_reader(txt, text_mask)
      c = c + self.slot_pool(slots.reshape(slots.shape[0], -1))[:, None, :]
      txt = jnp.concatenate([slots, txt], axis=1)
      text_mask = jnp.concatenate([jnp.ones(slots.shape[:2], bool), text_mask], axis=1)
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
    out = out.astype(jnp.float32)
    if not cfg.palette:
      return (out, None) if return_logits else out
    # [B, N, pixels * K] logits -> the expected palette colour of every pixel, [B, N, P].
    logits = out.reshape(*out.shape[:-1], -1, len(cfg.palette))
    x0 = palette_x0(logits, cfg.palette)
    return (x0, logits) if return_logits else x0
