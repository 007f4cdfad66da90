"""A PyTorch reference of the sorax generator (text encoder + DiT); the VAE decoder's is in
sorax/export/torch_vae.py.

Plain `torch.nn` modules written from the JAX code (sorax/models/layers.py, dit.py, text.py,
vae.py), op for op, for users who run sorax weights outside JAX and as a parity check of the
export. Every module's `state_dict()` names are the export's tensor names (docs/export_layout.md)
and its parameters keep the JAX shapes (dense kernels [in, out], attention [D, H, K], conv
kernels [kt, kh, kw, in, out]), so a `sorax export` file loads with `load_state_dict(...,
strict=True)` and nothing is transposed by hand.

  gen = load_generator("model.safetensors")          # TorchGenerator, float32, eval mode
  v = gen(x, positions, t, ids, mask)                # [B, N, P], as sorax.models.generator

Needs the `torch` extra (`pip install -e ".[torch]"`); imports no JAX or Flax. Arrays are
channels-last, as in the JAX code.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import torch
import torch.nn.functional as F
from torch import nn

from sorax.models import weights_layout as layout_lib

class ExportError(ValueError):
  """A file the reference cannot load: missing, of another format, or not fitting its config."""


# ------------------------------------------------------------------------------ layers


class Dense(nn.Module):
  """y = x @ kernel + bias, kernel [in, out] (flax's layout)."""

  def __init__(self, fin: int, fout: int, bias: bool = True):
    super().__init__()
    self.kernel = nn.Parameter(torch.zeros(fin, fout))
    self.bias = nn.Parameter(torch.zeros(fout)) if bias else None

  def forward(self, x):
    y = x @ self.kernel
    return y if self.bias is None else y + self.bias


class LayerNorm(nn.Module):
  """flax LayerNorm (epsilon 1e-6, variance as E[x^2] - E[x]^2); `affine=False`: no params."""

  def __init__(self, d: int, affine: bool = True, eps: float = 1e-6):
    super().__init__()
    self.eps = eps
    self.scale = nn.Parameter(torch.ones(d)) if affine else None
    self.bias = nn.Parameter(torch.zeros(d)) if affine else None

  def forward(self, x):
    mean = x.mean(-1, keepdim=True)
    var = (x * x).mean(-1, keepdim=True) - mean * mean
    y = (x - mean) * torch.rsqrt(var.clamp_min(0) + self.eps)
    return y if self.scale is None else y * self.scale + self.bias


class RMSNorm(nn.Module):
  def __init__(self, d: int):
    super().__init__()
    self.scale = nn.Parameter(torch.ones(d))

  def forward(self, x):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * self.scale


def rope_axis_dims(head_dim: int, num_axes: int) -> tuple[int, ...]:
  if num_axes == 1:
    return (head_dim,)
  hw = 2 * (head_dim // 6)
  return (head_dim - 2 * hw, hw, hw)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
  """positions [B, N, A] -> angles [B, N, head_dim // 2] (t, h, w parts for A = 3)."""
  parts = []
  for a, d in enumerate(rope_axis_dims(head_dim, positions.shape[-1])):
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    parts.append(positions[..., a:a + 1].float() * freqs)
  return torch.cat(parts, -1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
  """Rotates pairs (x_i, x_{i+K/2}) of x [B, N, H, K] by angles [B, N, K/2]."""
  x1, x2 = x.chunk(2, -1)
  cos, sin = angles.cos()[:, :, None], angles.sin()[:, :, None]
  return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
  half = dim // 2
  freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
  args = (t.float() * 1000.0)[..., None] * freqs
  return torch.cat([args.cos(), args.sin()], -1)


POS_FREQS = 8


def position_features(positions: torch.Tensor, token_mask=None, num: int = POS_FREQS):
  """sorax.models.layers.position_features: [B, N, 3] int -> [B, N, 6 * num]."""
  pos = positions.float()
  valid = pos if token_mask is None else torch.where(token_mask[..., None], pos, 0.0)
  extent = valid.amax(1, keepdim=True) + 1.0
  frac = (pos[..., 1:] + 0.5) / extent[..., 1:]
  k = torch.arange(num, dtype=torch.float32)
  space = (frac[..., None] * (math.pi * 2.0 ** k)).reshape(*frac.shape[:-1], 2 * num)
  omega = (math.pi / 2) * torch.exp(-math.log(256.0) * k / max(num - 1, 1))
  args = torch.cat([pos[..., :1] * omega, space], -1)
  return torch.cat([args.cos(), args.sin()], -1)


def gelu(x):
  return F.gelu(x, approximate="tanh")


class Attention(nn.Module):
  """sorax.models.layers.Attention: wq/wk/wv [D, H, K], wo [H, K, D], QK RMS norm, RoPE on
  self-attention, masked keys get -0.7 * float32 max (as jax.nn.dot_product_attention)."""

  def __init__(self, d: int, heads: int, qk_norm: bool = True):
    super().__init__()
    k = d // heads
    self.wq, self.wk, self.wv = (nn.Parameter(torch.zeros(d, heads, k)) for _ in range(3))
    self.wo = nn.Parameter(torch.zeros(heads, k, d))
    self.q_norm = RMSNorm(k) if qk_norm else None
    self.k_norm = RMSNorm(k) if qk_norm else None

  def forward(self, x, context=None, rope=None, mask=None):
    ctx = x if context is None else context
    q = torch.einsum("bnd,dhk->bnhk", x, self.wq)
    k = torch.einsum("bmd,dhk->bmhk", ctx, self.wk)
    v = torch.einsum("bmd,dhk->bmhk", ctx, self.wv)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    if rope is not None:
      q, k = apply_rope(q, rope), apply_rope(k, rope)
    logits = torch.einsum("bnhk,bmhk->bhnm", q, k) / math.sqrt(q.shape[-1])
    if mask is not None:
      m = mask[:, None, None, :] if mask.ndim == 2 else mask
      logits = torch.where(m, logits, torch.tensor(-0.7 * torch.finfo(torch.float32).max))
    out = torch.einsum("bhnm,bmhk->bnhk", logits.softmax(-1), v)
    return torch.einsum("bnhk,hkd->bnd", out, self.wo)


class MLP(nn.Module):
  def __init__(self, d: int, hidden: int):
    super().__init__()
    self.up, self.down = Dense(d, hidden), Dense(hidden, d)

  def forward(self, x):
    return self.down(gelu(self.up(x)))


# ------------------------------------------------------------------------------ text encoder


class TextBlock(nn.Module):
  def __init__(self, d: int, heads: int):
    super().__init__()
    self.norm1, self.attn = LayerNorm(d), Attention(d, heads)
    self.norm2, self.mlp = LayerNorm(d), MLP(d, 4 * d)

  def forward(self, x, rope, mask):
    x = x + self.attn(self.norm1(x), rope=rope, mask=mask)
    return x + self.mlp(self.norm2(x))


class Embed(nn.Module):
  def __init__(self, rows: int, d: int):
    super().__init__()
    self.embedding = nn.Parameter(torch.zeros(rows, d))

  def forward(self, ids):
    return self.embedding[ids]


class TextEncoder(nn.Module):
  """sorax.models.text.TextEncoder: ids int [B, L], mask bool [B, L] -> [B, L, width]."""

  def __init__(self, rows: int, d: int, depth: int, heads: int):
    super().__init__()
    self.heads = heads
    self.embed = Embed(rows, d)
    self.blocks = nn.ModuleList([TextBlock(d, heads) for _ in range(depth)])
    self.norm = LayerNorm(d)

  def forward(self, ids, mask):
    x = self.embed(ids)
    pos = torch.arange(ids.shape[1])[None, :, None].expand(*ids.shape, 1)
    rope = rope_angles(pos, x.shape[-1] // self.heads)
    for block in self.blocks:
      x = block(x, rope, mask)
    return self.norm(x)


# ------------------------------------------------------------------------------ DiT


class DiTBlock(nn.Module):
  def __init__(self, d: int, heads: int, mlp_ratio: float, qk_norm: bool):
    super().__init__()
    self.norm1 = LayerNorm(d, affine=False)
    self.attn = Attention(d, heads, qk_norm)
    self.norm_x = LayerNorm(d)
    self.cross = Attention(d, heads, qk_norm)
    self.norm2 = LayerNorm(d, affine=False)
    self.mlp = MLP(d, int(d * mlp_ratio))
    self.modulation = Dense(d, 6 * d)

  def forward(self, x, c, rope, text, text_mask, token_mask):
    shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, -1)
    x = x + gate1 * self.attn(self.norm1(x) * (1 + scale1) + shift1, rope=rope, mask=token_mask)
    x = x + self.cross(self.norm_x(x), context=text, mask=text_mask)
    return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class SlotBlock(nn.Module):
  def __init__(self, d: int, heads: int):
    super().__init__()
    self.norm1, self.attn = LayerNorm(d), Attention(d, heads)
    self.norm2, self.cross = LayerNorm(d), Attention(d, heads)
    self.norm3, self.mlp = LayerNorm(d), MLP(d, 4 * d)

  def forward(self, s, text, text_mask):
    s = s + self.attn(self.norm1(s))
    s = s + self.cross(self.norm2(s), context=text, mask=text_mask)
    return s + self.mlp(self.norm3(s))


class SlotReader(nn.Module):
  """sorax.models.dit.SlotReader: K learned queries read the text -> slots [B, K, D]."""

  def __init__(self, num_slots: int, d: int, heads: int, depth: int):
    super().__init__()
    self.queries = nn.Parameter(torch.zeros(num_slots, d))
    self.blocks = nn.ModuleList([SlotBlock(d, heads) for _ in range(depth)])
    self.norm = LayerNorm(d)

  def forward(self, text, text_mask):
    s = self.queries[None].expand(text.shape[0], *self.queries.shape)
    for block in self.blocks:
      s = block(s, text, text_mask)
    return self.norm(s)


class DiT(nn.Module):
  """sorax.models.dit.DiT: x [B, N, P], positions int [B, N, 3], t [B] or [B, N], text
  [B, L, text_width], text_mask bool [B, L], token_mask bool [B, N] -> [B, N, P]."""

  def __init__(self, token_dim: int, width: int, depth: int, heads: int, mlp_ratio: float,
               text_width: int, qk_norm: bool = True, head_hidden: int = 0,
               rope_theta: float = 10000.0, abs_pos: bool = False, pooled_text: bool = False,
               slots: int = 0, slot_depth: int = 2, slot_classes: int = 0, palette=(),
               self_cond: bool = False):
    super().__init__()
    self.heads, self.rope_theta = heads, rope_theta
    self.token_dim = token_dim
    self.register_buffer("palette", torch.tensor(palette, dtype=torch.float32).reshape(
        len(palette), len(palette[0]) if palette else 0), persistent=False)
    d = width
    self.patch_embed = Dense(token_dim, d)
    self.time_in, self.time_out = Dense(256, d), Dense(d, d)
    self.pos_embed = Dense(6 * POS_FREQS, d) if abs_pos else None
    self.self_embed = Dense(token_dim, d, bias=False) if self_cond else None
    self.text_in, self.text_out = Dense(text_width, d), Dense(d, d)
    self.text_pool = Dense(text_width, d) if pooled_text else None
    if slots:
      self.slot_reader = SlotReader(slots, d, heads, slot_depth)
      self.slot_pool = Dense(slots * d, d)
      self.slot_head = Dense(d, slot_classes) if slot_classes else None
    else:
      self.slot_reader = self.slot_pool = self.slot_head = None
    self.blocks = nn.ModuleList([DiTBlock(d, heads, mlp_ratio, qk_norm) for _ in range(depth)])
    self.final_norm = LayerNorm(d, affine=False)
    self.final_mod = Dense(d, 2 * d)
    out_dim = token_dim // len(palette[0]) * len(palette) if palette else token_dim
    self.final_out = Dense(d, out_dim)
    if head_hidden:
      self.head_in, self.head_out = Dense(d, head_hidden), Dense(head_hidden, token_dim)
    else:
      self.head_in = self.head_out = None

  def forward(self, x, positions, t, text, text_mask, token_mask=None, x0_prev=None):
    h = self.patch_embed(x)
    if self.self_embed is not None and x0_prev is not None:
      h = h + self.self_embed(x0_prev)
    x = h
    if self.pos_embed is not None:
      x = x + self.pos_embed(position_features(positions, token_mask))
    t = t[:, None] if t.ndim == 1 else t
    c = self.time_out(F.silu(self.time_in(timestep_embedding(t, 256))))
    if self.text_pool is not None:
      m = text_mask[..., None].to(text.dtype)
      c = c + self.text_pool((text * m).sum(1) / m.sum(1).clamp(min=1.0))[:, None, :]
    txt = self.text_out(gelu(self.text_in(text)))
    if self.slot_reader is not None:
      slots = self.slot_reader(txt, text_mask)
      c = c + self.slot_pool(slots.reshape(slots.shape[0], -1))[:, None, :]
      txt = torch.cat([slots, txt], 1)
      text_mask = torch.cat([torch.ones(slots.shape[:2], dtype=torch.bool), text_mask], 1)
    rope = rope_angles(positions, x.shape[-1] // self.heads, self.rope_theta)
    for block in self.blocks:
      x = block(x, c, rope, txt, text_mask, token_mask)
    shift, scale = self.final_mod(F.silu(c)).chunk(2, -1)
    x = self.final_norm(x) * (1 + scale) + shift
    out = self.final_out(x)
    if self.head_in is not None:
      out = out + self.head_out(gelu(self.head_in(x)))
    if len(self.palette):  # the palette head: each pixel's expected palette colour
      logits = out.reshape(*out.shape[:-1], -1, self.palette.shape[0])
      out = (logits.softmax(-1) @ self.palette).reshape(*out.shape[:-1], self.token_dim)
    return out


class TorchGenerator(nn.Module):
  """Text encoder + DiT (sorax.models.generator.Generator); `state_dict()` = export names."""

  def __init__(self, text: TextEncoder, dit: DiT):
    super().__init__()
    self.text, self.dit = text, dit

  def encode_text(self, ids, mask):
    return self.text(ids, mask)

  def forward(self, x, positions, t, ids, mask, token_mask=None):
    return self.dit(x, positions, t, self.text(ids, mask), mask, token_mask)


# ------------------------------------------------------------------------------ loading


def _read(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
  from safetensors import safe_open  # noqa: PLC0415
  p = pathlib.Path(path)
  if not p.is_file():
    raise ExportError(f"weights file {p} not found")
  try:
    with safe_open(str(p), framework="pt") as f:
      meta = f.metadata() or {}
      tensors = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # safetensors' own error type on a bad header
    raise ExportError(f"{p} is not a safetensors file: {e}") from e
  return tensors, meta


def _load_into(module: nn.Module, tensors: dict[str, torch.Tensor], p, dtype) -> nn.Module:
  want = module.state_dict()
  missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
  if missing or extra:
    raise ExportError(f"{p} does not fit its config: missing {missing[:5]}, unexpected "
                      f"{extra[:5]}")
  for k, v in want.items():
    if tuple(tensors[k].shape) != tuple(v.shape):
      raise ExportError(f"{p}: {k} has shape {tuple(tensors[k].shape)}, its config wants "
                        f"{tuple(v.shape)}")
  module.load_state_dict({k: v.to(torch.float32) for k, v in tensors.items()}, strict=True)
  return module.to(dtype).eval()


def _palette(cfg: dict) -> tuple[tuple[float, ...], ...]:
  """sorax.models.generator.palette_latent: the palette head's colours in latent units."""
  if not cfg["model"].get("palette_head", False):
    return ()
  scale = float(cfg["codec"]["scale"])
  return tuple(tuple(round((v / 127.5 - 1.0) * scale, 6) for v in c)
               for c in cfg["model"]["palette"])


def load_generator(path: str | os.PathLike, dtype=torch.float32) -> TorchGenerator:
  """A generator weights file (per-layer export or the stacked shipped layout) -> TorchGenerator
  in eval mode. Its run config comes from the metadata; `gen.config` keeps it."""
  tensors, meta = _read(path)
  if meta.get("format") not in layout_lib.FORMATS:
    raise ExportError(f"{path} is not a sorax generator file (format {meta.get('format')!r})")
  tensors = layout_lib.unstack(tensors)
  try:
    cfg = json.loads(meta["config"])
    m = cfg["model"]
    wan_like = {k: m[k] for k, off in (("mlp_dim", 0), ("attn_bias", False),
                                       ("qk_norm_over", "head"), ("head_modulation", "adaln"),
                                       ("text_encoder", "sorax"))
                if m.get(k, off) != off}
    if wan_like:  # options of imported Wan models (sorax/export/wan.py) and the MiniLM encoder
      raise ExportError(f"{path}: the PyTorch reference does not implement model options "
                        f"{wan_like}")
    text = TextEncoder(tensors["text.embed.embedding"].shape[0], m["text_width"],
                       m["text_depth"], m["text_heads"])
    dit = DiT(tensors["dit.patch_embed.kernel"].shape[0], m["width"], m["depth"], m["heads"],
              m["mlp_ratio"], m["text_width"], m["qk_norm"], m.get("head_hidden", 0),
              abs_pos=bool(m.get("abs_pos", False)),
              pooled_text=bool(m.get("pooled_text", False)), slots=m.get("slots", 0),
              slot_depth=m.get("slot_depth", 2),
              slot_classes=sum(m.get("slot_classes", ())) if m.get("slots", 0) else 0,
              palette=_palette(cfg), self_cond=bool(m.get("self_cond", False)))
  except (KeyError, ValueError) as e:
    raise ExportError(f"{path} has bad metadata or is missing a tensor: {e}") from e
  gen = _load_into(TorchGenerator(text, dit), tensors, path, dtype)
  gen.config = cfg
  gen.latent_stats = json.loads(meta["latent_stats"]) if meta.get("latent_stats") else None
  return gen
