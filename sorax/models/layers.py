"""Shared transformer building blocks: dense layers with logical axes, norms, N-D RoPE,
attention through `jax.nn.dot_product_attention`, MLP.

Every parameter carries logical axis names (`embed`, `mlp`, `heads`, `kv`, ...); a config's
rules table maps them onto mesh axes (see `sorax.parallel.mesh`). Key activations are
constrained with `act_*` names so that the same module shards on any mesh.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from sorax.parallel.mesh import constrain

Dtype = Any
_default_init = nnx.initializers.xavier_uniform()


def partitioned(init, axes: tuple[str | None, ...]):
  """Initializer tagged with logical axes. Eager sharding is off: sharded placement happens
  once, shape-first, in `sorax.train.state` (never by building on one device first)."""
  return nnx.with_partitioning(init, axes, eager_sharding=False)


def dense(in_features: int, out_features: int, axes: tuple[str, str], *, rngs: nnx.Rngs,
          dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32, use_bias: bool = True,
          zero_init: bool = False) -> nnx.Linear:
  """nnx.Linear whose kernel is [in, out] with logical `axes` and whose bias is [out]."""
  init = nnx.initializers.zeros_init() if zero_init else _default_init
  return nnx.Linear(
      in_features, out_features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
      kernel_init=partitioned(init, axes),
      bias_init=partitioned(nnx.initializers.zeros_init(), (axes[1],)),
      rngs=rngs)


def layer_norm(features: int, *, rngs: nnx.Rngs, affine: bool = True, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32, axis: str = "embed") -> nnx.LayerNorm:
  return nnx.LayerNorm(
      features, epsilon=1e-6, use_bias=affine, use_scale=affine, dtype=dtype,
      param_dtype=param_dtype, rngs=rngs,
      scale_init=partitioned(nnx.initializers.ones_init(), (axis,)),
      bias_init=partitioned(nnx.initializers.zeros_init(), (axis,)))


class RMSNorm(nnx.Module):
  """RMS norm over the last axis, or the last len(features) axes when `features` is a tuple
  (QK-norm per head: (K,); over all heads at once, as Wan2.1 does: (H, K))."""

  def __init__(self, features: int | tuple[int, ...], axis: str | tuple[str, ...], *,
               param_dtype: Dtype = jnp.float32):
    shape = (features,) if isinstance(features, int) else tuple(features)
    axes = (axis,) if isinstance(axis, str) else tuple(axis)
    self.scale = nnx.Param(jnp.ones(shape, param_dtype), out_sharding=axes, eager_sharding=False)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    reduce = tuple(range(-self.scale.ndim, 0))
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=reduce, keepdims=True) + 1e-6)
    return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


# ----------------------------------------------------------------------------- RoPE


def rope_axis_dims(head_dim: int, num_axes: int) -> tuple[int, ...]:
  """How many of a head's dims rotate with each position axis (each even, summing to head_dim).

  For 3 axes (t, h, w) the split follows Wan/Open-Sora: h and w get 2*(K//6) each, t the rest.
  """
  if head_dim % 2:
    raise ValueError(f"RoPE needs an even head_dim, got {head_dim}")
  if num_axes == 1:
    return (head_dim,)
  if num_axes == 3:
    hw = 2 * (head_dim // 6)
    return (head_dim - 2 * hw, hw, hw)
  raise ValueError(f"RoPE supports 1 or 3 position axes, got {num_axes}")


def rope_angles(positions: jax.Array, head_dim: int, theta: float = 10000.0) -> jax.Array:
  """positions [B, N, A] (int or float) -> rotation angles [B, N, head_dim // 2]."""
  dims = rope_axis_dims(head_dim, positions.shape[-1])
  parts = []
  for a, d in enumerate(dims):
    freqs = theta ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [d/2]
    parts.append(positions[..., a:a + 1].astype(jnp.float32) * freqs)
  return jnp.concatenate(parts, axis=-1)


def apply_rope(x: jax.Array, angles: jax.Array) -> jax.Array:
  """Rotates pairs (x_i, x_{i+K/2}) of x [B, N, H, K] by angles [B, N, K/2]."""
  x32 = x.astype(jnp.float32)
  x1, x2 = jnp.split(x32, 2, axis=-1)
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


# ------------------------------------------------------------------------- attention


class Attention(nnx.Module):
  """Multi-head attention with optional QK-norm and RoPE.

  Self-attention when `context` is None, cross-attention otherwise. The kernel is
  `jax.nn.dot_product_attention`, so XLA picks cuDNN flash attention on GPU (with
  `implementation="cudnn"`) and fused kernels on TPU; `None` lets JAX choose.
  """

  def __init__(self, width: int, heads: int, *, context_width: int | None = None,
               qk_norm: bool = True, qk_norm_over: str = "head", bias: bool = False,
               implementation: str | None = None, rngs: nnx.Rngs,
               dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32):
    """`qk_norm_over`: "head" (RMS over each head's K dims) or "width" (over all H*K dims at
    once, Wan2.1's). `bias`: biases on the q/k/v/o projections (Wan2.1 has them)."""
    if width % heads:
      raise ValueError(f"width {width} is not divisible by heads {heads}")
    self.heads, self.head_dim = heads, width // heads
    self.dtype, self.implementation = dtype, implementation
    kw = context_width or width
    init = partitioned(_default_init, ("embed", "heads", "kv"))

    def proj(fan_in):
      w = init(rngs.params(), (fan_in, heads, self.head_dim), param_dtype)
      return nnx.Param(w)

    self.wq, self.wk, self.wv = proj(width), proj(kw), proj(kw)
    wo_init = partitioned(_default_init, ("heads", "kv", "embed"))
    self.wo = nnx.Param(wo_init(rngs.params(), (heads, self.head_dim, width), param_dtype))
    if qk_norm_over not in ("head", "width"):
      raise ValueError(f"unknown qk_norm_over {qk_norm_over!r}; choose from ['head', 'width']")
    nf, na = ((self.head_dim,), ("kv",)) if qk_norm_over == "head" else \
        ((heads, self.head_dim), ("heads", "kv"))
    self.q_norm = RMSNorm(nf, na, param_dtype=param_dtype) if qk_norm else None
    self.k_norm = RMSNorm(nf, na, param_dtype=param_dtype) if qk_norm else None
    if bias:
      zeros = nnx.initializers.zeros_init()
      hk = partitioned(zeros, ("heads", "kv"))
      self.bq, self.bk, self.bv = (nnx.Param(hk(rngs.params(), (heads, self.head_dim),
                                                param_dtype)) for _ in range(3))
      self.bo = nnx.Param(partitioned(zeros, ("embed",))(rngs.params(), (width,), param_dtype))
    else:
      self.bq = self.bk = self.bv = self.bo = None

  def __call__(self, x: jax.Array, *, context: jax.Array | None = None,
               rope: jax.Array | None = None, mask: jax.Array | None = None) -> jax.Array:
    """x [B, N, D]; context [B, M, Dc]; rope angles [B, N, K/2] (self-attention only);
    mask bool [B, M] of valid keys (or [B, 1, N, M]). -> [B, N, D]."""
    ctx = x if context is None else context
    dt = self.dtype
    q = jnp.einsum("BND,DHK->BNHK", x.astype(dt), self.wq[...].astype(dt))
    k = jnp.einsum("BMD,DHK->BMHK", ctx.astype(dt), self.wk[...].astype(dt))
    v = jnp.einsum("BMD,DHK->BMHK", ctx.astype(dt), self.wv[...].astype(dt))
    if self.bq is not None:
      q, k, v = (a + b[...].astype(dt) for a, b in ((q, self.bq), (k, self.bk), (v, self.bv)))
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    if rope is not None:
      q, k = apply_rope(q, rope), apply_rope(k, rope)
    q = constrain(q, ("act_batch", "act_length", "act_heads", "act_kv"))
    k = constrain(k, ("act_batch", "act_kv_length", "act_heads", "act_kv"))
    if mask is not None and mask.ndim == 2:
      mask = mask[:, None, None, :]  # [B, 1(heads), 1(query), M]
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.implementation)
    out = jnp.einsum("BNHK,HKD->BND", out, self.wo[...].astype(dt))
    if self.bo is not None:
      out = out + self.bo[...].astype(dt)
    return constrain(out, ("act_batch", "act_length", "act_embed"))


class MLP(nnx.Module):
  def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs, dtype: Dtype = jnp.float32,
               param_dtype: Dtype = jnp.float32):
    self.up = dense(width, hidden, ("embed", "mlp"), rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.down = dense(hidden, width, ("mlp", "embed"), rngs=rngs, dtype=dtype,
                      param_dtype=param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = jax.nn.gelu(self.up(x), approximate=True)
    h = constrain(h, ("act_batch", "act_length", "act_mlp"))
    return self.down(h)


POS_FREQS = 8  # sin/cos pairs per axis in position_features


def position_features(positions: jax.Array, token_mask: jax.Array | None = None,
                      num: int = POS_FREQS) -> jax.Array:
  """Absolute position features of tokens, positions int [B, N, 3] (t, h, w) -> [B, N, 6 * num].

  RoPE alone leaves the token stream translation-invariant: a token cannot tell the canvas edge
  or the clip's first frame from anywhere else, yet the world's motions are absolute (a
  left-mover starts in the right third, falling starts at rest at t = 0 and bounces on the
  floor). Space is given as the token centre's fraction of the canvas (so any resolution and
  aspect ratio reads the same) at frequencies pi * 2^k; time as the latent frame index itself
  (motion is per second, not per clip) at periods 4 .. ~1000 latent frames. The canvas extent
  of each row is its largest real (token_mask) position + 1.
  """
  pos = positions.astype(jnp.float32)
  valid = pos if token_mask is None else jnp.where(token_mask[..., None], pos, 0.0)
  extent = valid.max(axis=1, keepdims=True) + 1.0  # [B, 1, 3]
  frac = (pos[..., 1:] + 0.5) / extent[..., 1:]  # [B, N, 2] in (0, 1)
  k = jnp.arange(num, dtype=jnp.float32)
  space = (frac[..., None] * (math.pi * 2.0 ** k)).reshape(*frac.shape[:-1], 2 * num)
  omega = (math.pi / 2) * jnp.exp(-math.log(256.0) * k / max(num - 1, 1))
  time = pos[..., :1] * omega  # [B, N, num]
  args = jnp.concatenate([time, space], axis=-1)  # [B, N, 3 * num]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal features of t [...] in [0, 1] (scaled by 1000, as in DiT) -> [..., dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = (t.astype(jnp.float32) * 1000.0)[..., None] * freqs
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
