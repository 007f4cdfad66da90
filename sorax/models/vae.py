"""Causal 3D convolutional VAE: video [B, T, H, W, 3] <-> latent [B, t, h, w, c].

Causal in time: every convolution pads (or caches) frames on the left only, so latent frame k
depends on video frames <= its last one, and frame 0 is encoded alone (an image is a one-frame
video). With a temporal factor r, T = 1 + r*k frames map to t = 1 + k latent frames.

Constant memory for any length: `encode_chunked` / `decode_chunked` feed the video chunk by chunk
and carry each causal conv's last input frames (its *cache*) from one chunk to the next. The
whole-video call is the same code with an empty cache, so the two agree to float tolerance.
Norms are RMS over channels at each position (not GroupNorm over time), which keeps causality
and makes chunking exact.

Every parameter carries logical axis names (`conv_t`, `conv_h`, `conv_w`, `conv_in`, `conv_out`)
for the config's sharding rules, as in the DiT.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sorax.models.layers import partitioned
from sorax.parallel.mesh import constrain

LOGVAR_INIT = -8.0
Cache = Any  # nested dict of [B, k, H, W, C] arrays (or None at the start of a video)
_ACT = ("act_batch", None, None, None, None)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  """Shape of the VAE. Factors: spatial = patch * 2**sum(spatial_down), temporal =
  2**sum(temporal_down). `widths[i]` is the channel count of level i; a level i < len-1 ends with
  a downsample of `spatial_down[i]` / `temporal_down[i]`.

  `patch` > 1 folds patch x patch pixels into channels before the first conv (LTX-Video style):
  most of the compute then runs at 1/patch^2 of the pixels, which is what makes the world VAE
  trainable on a CPU.

  `refine` > 0 (with `patch` > 1) adds two spatial convs at full pixel resolution after the
  unfold, fed the RGB and `refine` feature channels per pixel: without them each patch x patch
  block of output pixels is a linear map of one latent position's features, which leaves block
  seams and soft edges the world's flat shapes make plain.

  `encoder_widths` (default: `widths`) lets the encoder be lighter than the decoder: the DiT
  encodes every training batch (unless latents are cached) but sampling only decodes, and
  locating edges in pixels is easier than drawing them back sharp.
  """
  latent_channels: int = 16
  patch: int = 1
  widths: tuple[int, ...] = (128, 256, 512, 512)
  spatial_down: tuple[bool, ...] = (True, True, True)
  temporal_down: tuple[bool, ...] = (False, True, True)
  blocks: int = 2
  encoder_widths: tuple[int, ...] | None = None
  refine: int = 0  # > 0: a pixel-resolution head of this many channels after the unfold
  dtype: str = "float32"
  param_dtype: str = "float32"

  def __post_init__(self):
    if len(self.spatial_down) != len(self.widths) - 1 or len(self.temporal_down) != len(self.widths) - 1:
      raise ValueError(f"spatial_down and temporal_down need len(widths)-1 = {len(self.widths) - 1} "
                       f"entries, got {len(self.spatial_down)} and {len(self.temporal_down)}")
    if self.encoder_widths is not None and len(self.encoder_widths) != len(self.widths):
      raise ValueError(f"encoder_widths needs one width per level ({len(self.widths)}), got "
                       f"{self.encoder_widths}")
    if self.patch < 1 or self.blocks < 0 or self.latent_channels < 1:
      raise ValueError(f"bad VAEConfig: patch={self.patch} blocks={self.blocks} "
                       f"latent_channels={self.latent_channels}")

  @property
  def enc_widths(self) -> tuple[int, ...]:
    return tuple(self.encoder_widths or self.widths)

  @property
  def temporal(self) -> int:
    return 2 ** sum(map(bool, self.temporal_down))

  @property
  def spatial(self) -> int:
    return self.patch * 2 ** sum(map(bool, self.spatial_down))


# ------------------------------------------------------------------------------ shapes


def latent_frames(frames: int, temporal: int) -> int:
  """Latent frames for a video of `frames` frames (padded at the end to 1 + temporal*k)."""
  if frames < 1:
    raise ValueError(f"a video needs at least one frame, got {frames}")
  return 1 + -(-(frames - 1) // temporal)


def video_frames(latent_t: int, temporal: int) -> int:
  return 1 + (latent_t - 1) * temporal


def pad_frames(video: jax.Array, temporal: int) -> jax.Array:
  """[B, T, ...] -> [B, 1 + temporal*k, ...] by repeating the last frame (cropped after decode)."""
  t = video.shape[1]
  extra = video_frames(latent_frames(t, temporal), temporal) - t
  if not extra:
    return video
  return jnp.concatenate([video, jnp.repeat(video[:, -1:], extra, axis=1)], axis=1)


# ------------------------------------------------------------------------------ layers


class CausalConv3d(nnx.Module):
  """3D conv, causal in time: left-pads kt-1 copies of the first frame, or prepends the cache
  from the previous chunk. Spatially 'SAME' (zero padding). kernel [kt, kh, kw, in, out]."""

  def __init__(self, cin: int, cout: int, kernel=(3, 3, 3), stride=(1, 1, 1), *, rngs: nnx.Rngs,
               dtype=jnp.float32, param_dtype=jnp.float32, zero_init: bool = False):
    self.kernel_size, self.stride, self.dtype = tuple(kernel), tuple(stride), dtype
    init = (nnx.initializers.zeros_init() if zero_init else
            nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"))
    axes = ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")
    self.kernel = nnx.Param(partitioned(init, axes)(rngs.params(), (*kernel, cin, cout), param_dtype))
    self.bias = nnx.Param(partitioned(nnx.initializers.zeros_init(), ("conv_out",))(
        rngs.params(), (cout,), param_dtype))

  def __call__(self, x: jax.Array, cache: jax.Array | None = None):
    """x [B, T, H, W, C]; cache [B, k, H, W, C] or None -> (y [B, T', H', W', O], new cache)."""
    kt, kh, kw = self.kernel_size
    st, sh, sw = self.stride
    if cache is None:
      # Replicate the first frame: the past of frame 0 looks like a still video, not a black
      # one, so a net trained on short clips meets the same statistics deep into a long video.
      past = jnp.repeat(x[:, :1], kt - 1, axis=1)
    else:
      past = cache.astype(x.dtype)
    xp = jnp.concatenate([past, x], axis=1) if kt > 1 else x
    n_out = (xp.shape[1] - kt) // st + 1
    # The next window starts at n_out*st: what is left from there is the next chunk's past.
    new_cache = xp[:, n_out * st:] if kt > 1 else None
    # Odd kernels, stride s: pad so that H' = ceil(H / s), as a 'SAME' conv would.
    pads = [(0, 0)] + [(k // 2, k // 2) for k in (kh, kw)]
    y = jax.lax.conv_general_dilated(
        xp.astype(self.dtype), self.kernel[...].astype(self.dtype), window_strides=(st, sh, sw),
        padding=pads, dimension_numbers=("NTHWC", "THWIO", "NTHWC"))
    y = y + self.bias[...].astype(self.dtype)
    return y, new_cache


class ChannelRMSNorm(nnx.Module):
  """RMS norm over channels at each (t, h, w): causal and chunk-exact, unlike GroupNorm."""

  def __init__(self, channels: int, *, param_dtype=jnp.float32):
    self.scale = nnx.Param(jnp.ones((channels,), param_dtype), out_sharding=("conv_out",),
                           eager_sharding=False)

  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + 1e-6)
    return (y * self.scale[...]).astype(x.dtype)


class ResBlock(nnx.Module):
  """norm -> SiLU -> 3x3x3 conv -> norm -> SiLU -> 1x3x3 conv, plus the input. One temporal conv
  per block: half the compute, and a temporal receptive field short enough that clips of a few
  latent frames train the steady state a long video runs in."""

  def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs, **kw):
    self.norm1 = ChannelRMSNorm(cin, param_dtype=kw.get("param_dtype", jnp.float32))
    self.conv1 = CausalConv3d(cin, cout, rngs=rngs, **kw)
    self.norm2 = ChannelRMSNorm(cout, param_dtype=kw.get("param_dtype", jnp.float32))
    # Zero-init the last conv: every block starts as the identity (a well-behaved deep net).
    self.conv2 = CausalConv3d(cout, cout, (1, 3, 3), rngs=rngs, zero_init=True, **kw)
    self.skip = CausalConv3d(cin, cout, (1, 1, 1), rngs=rngs, **kw) if cin != cout else None

  def __call__(self, x, cache: Cache = None):
    c = cache or {}
    h, c1 = self.conv1(jax.nn.silu(self.norm1(x)), c.get("conv1"))
    h, c2 = self.conv2(jax.nn.silu(self.norm2(h)), c.get("conv2"))
    s = x if self.skip is None else self.skip(x)[0]
    return constrain(s + h, _ACT), {"conv1": c1, "conv2": c2}


class Downsample(nnx.Module):
  """Strided conv: 2x in space and/or time. In time, kernel 3 stride 2 with causal padding maps
  1 + 2k frames to 1 + k (frame 0 alone, then pairs)."""

  def __init__(self, channels: int, spatial: bool, temporal: bool, *, rngs, **kw):
    self.conv = CausalConv3d(channels, channels, (3 if temporal else 1, 3, 3),
                             (2 if temporal else 1, 2 if spatial else 1, 2 if spatial else 1),
                             rngs=rngs, **kw)

  def __call__(self, x, cache: Cache = None):
    y, c = self.conv(x, (cache or {}).get("conv"))
    return y, {"conv": c}


class Upsample(nnx.Module):
  """Nearest 2x in space, then a causal conv; in time, the conv makes 2x channels that unfold
  into two frames each. The video's first frame makes one frame (drop its first half), mirroring
  Downsample: 1 + k latent frames -> 1 + 2k frames."""

  def __init__(self, channels: int, spatial: bool, temporal: bool, *, rngs, **kw):
    self.spatial, self.temporal = spatial, temporal
    self.conv = CausalConv3d(channels, channels * (2 if temporal else 1), rngs=rngs, **kw)

  def __call__(self, x, cache: Cache = None, *, first: bool = True):
    if self.spatial:
      x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
    y, c = self.conv(x, (cache or {}).get("conv"))
    if self.temporal:
      b, t, h, w, c2 = y.shape
      y = y.reshape(b, t, h, w, 2, c2 // 2).transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, -1)
      if first:
        y = y[:, 1:]
    return y, {"conv": c}


def _fold(x: jax.Array, p: int) -> jax.Array:
  """[B, T, H, W, C] -> [B, T, H/p, W/p, C*p*p]."""
  if p == 1:
    return x
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h // p, p, w // p, p, c).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h // p, w // p, p * p * c)


def _unfold(x: jax.Array, p: int) -> jax.Array:
  if p == 1:
    return x
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h, w, p, p, c // (p * p)).transpose(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h * p, w * p, c // (p * p))


# ------------------------------------------------------------------------------ model


class Encoder(nnx.Module):
  def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs, **kw):
    self.cfg = cfg
    w = cfg.enc_widths
    self.conv_in = CausalConv3d(3 * cfg.patch ** 2, w[0], rngs=rngs, **kw)
    self.levels = nnx.List()
    for i, width in enumerate(w):
      prev = w[i - 1] if i else w[0]
      blocks = nnx.List([ResBlock(prev if j == 0 else width, width, rngs=rngs, **kw)
                         for j in range(cfg.blocks)])
      down = (Downsample(width, cfg.spatial_down[i], cfg.temporal_down[i], rngs=rngs, **kw)
              if i < len(w) - 1 else None)
      self.levels.append(nnx.Dict(blocks=blocks, down=down))
    self.mid = ResBlock(w[-1], w[-1], rngs=rngs, **kw)
    self.norm_out = ChannelRMSNorm(w[-1], param_dtype=kw.get("param_dtype", jnp.float32))
    self.conv_out = CausalConv3d(w[-1], 2 * cfg.latent_channels, rngs=rngs, **kw)
    # Start with a small posterior std: at logvar 0 the sampled noise (std 1) swamps a latent of
    # std ~1 and reconstruction learns several times slower; the KL term raises it if it wants.
    c = cfg.latent_channels
    self.conv_out.bias[...] = jnp.concatenate([jnp.zeros((c,)), jnp.full((c,), LOGVAR_INIT)])

  def __call__(self, x: jax.Array, cache: Cache = None):
    """x [B, T, H, W, 3] -> (moments [B, t, h, w, 2c], cache)."""
    c = cache or {}
    new = {}
    h, new["conv_in"] = self.conv_in(_fold(x, self.cfg.patch), c.get("conv_in"))
    for i, level in enumerate(self.levels):
      for j, block in enumerate(level["blocks"]):
        h, new[f"l{i}b{j}"] = block(h, c.get(f"l{i}b{j}"))
      if level["down"] is not None:
        h, new[f"l{i}down"] = level["down"](h, c.get(f"l{i}down"))
    h, new["mid"] = self.mid(h, c.get("mid"))
    h, new["conv_out"] = self.conv_out(jax.nn.silu(self.norm_out(h)), c.get("conv_out"))
    return h.astype(jnp.float32), new


class Decoder(nnx.Module):
  def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs, **kw):
    self.cfg = cfg
    w = cfg.widths
    self.conv_in = CausalConv3d(cfg.latent_channels, w[-1], rngs=rngs, **kw)
    self.mid = ResBlock(w[-1], w[-1], rngs=rngs, **kw)
    self.levels = nnx.List()
    for i in reversed(range(len(w))):
      nxt = w[i]
      prev = w[i + 1] if i + 1 < len(w) else w[-1]
      blocks = nnx.List([ResBlock(prev if j == 0 else nxt, nxt, rngs=rngs, **kw)
                         for j in range(cfg.blocks)])
      up = (Upsample(nxt, cfg.spatial_down[i - 1], cfg.temporal_down[i - 1], rngs=rngs, **kw)
            if i > 0 else None)
      self.levels.append(nnx.Dict(blocks=blocks, up=up))
    self.norm_out = ChannelRMSNorm(w[0], param_dtype=kw.get("param_dtype", jnp.float32))
    self.conv_out = CausalConv3d(w[0], 3 * cfg.patch ** 2, rngs=rngs, **kw)
    self.refine = RefineHead(w[0], cfg.refine, cfg.patch, rngs=rngs, **kw) if cfg.refine else None

  def __call__(self, z: jax.Array, cache: Cache = None, *, first: bool = True):
    """z [B, t, h, w, c] -> (video [B, T, H, W, 3], cache). `first`: z starts at the video's
    latent frame 0 (which decodes to one frame, not `temporal`)."""
    c = cache or {}
    new = {}
    h, new["conv_in"] = self.conv_in(z, c.get("conv_in"))
    h, new["mid"] = self.mid(h, c.get("mid"))
    for i, level in enumerate(self.levels):
      for j, block in enumerate(level["blocks"]):
        h, new[f"l{i}b{j}"] = block(h, c.get(f"l{i}b{j}"))
      if level["up"] is not None:
        h, new[f"l{i}up"] = level["up"](h, c.get(f"l{i}up"), first=first)
    h = jax.nn.silu(self.norm_out(h))
    rgb, new["conv_out"] = self.conv_out(h, c.get("conv_out"))
    rgb = _unfold(rgb.astype(jnp.float32), self.cfg.patch)
    if self.refine is not None:
      rgb = self.refine(h, rgb)
    return rgb, new


class RefineHead(nnx.Module):
  """Full-resolution refinement: per-pixel features (a 1x1x1 conv of the last latent-resolution
  features, unfolded) and the RGB -> norm -> SiLU -> 1x3x3 conv -> norm -> SiLU -> 1x3x3 conv
  (zero-initialized) -> added to the RGB. Spatial only, so causality and chunking hold."""

  def __init__(self, cin: int, channels: int, patch: int, *, rngs: nnx.Rngs, **kw):
    pd = kw.get("param_dtype", jnp.float32)
    self.patch = patch
    self.feat = CausalConv3d(cin, channels * patch ** 2, (1, 1, 1), rngs=rngs, **kw)
    self.norm1 = ChannelRMSNorm(channels + 3, param_dtype=pd)
    self.conv1 = CausalConv3d(channels + 3, channels, (1, 3, 3), rngs=rngs, **kw)
    self.norm2 = ChannelRMSNorm(channels, param_dtype=pd)
    self.conv2 = CausalConv3d(channels, 3, (1, 3, 3), rngs=rngs, zero_init=True, **kw)

  def __call__(self, h: jax.Array, rgb: jax.Array) -> jax.Array:
    """h [B, t, h, w, cin] (latent resolution), rgb [B, T, H, W, 3] -> refined rgb."""
    f = _unfold(self.feat(h)[0], self.patch)
    x = jnp.concatenate([rgb.astype(f.dtype), f], axis=-1)
    x = self.conv1(jax.nn.silu(self.norm1(x)))[0]
    x = self.conv2(jax.nn.silu(self.norm2(x)))[0]
    return rgb + x.astype(jnp.float32)


class VAE(nnx.Module):
  """KL-regularized causal video autoencoder. Pixels in [-1, 1]."""

  def __init__(self, cfg: VAEConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    kw = dict(dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))
    self.encoder = Encoder(cfg, rngs=rngs, **kw)
    self.decoder = Decoder(cfg, rngs=rngs, **kw)

  def check_input(self, video: jax.Array) -> None:
    s = self.cfg.spatial
    if video.ndim != 5 or video.shape[-1] != 3:
      raise ValueError(f"VAE expects video [B, T, H, W, 3], got shape {video.shape}")
    if video.shape[2] % s or video.shape[3] % s:
      raise ValueError(f"VAE: height and width must be multiples of {s}, got {video.shape[2:4]}")
    if (video.shape[1] - 1) % self.cfg.temporal:
      raise ValueError(f"VAE: frames must be 1 + {self.cfg.temporal}*k (use pad_frames), "
                       f"got {video.shape[1]}")

  def moments(self, video: jax.Array, cache: Cache = None):
    """video [B, T, H, W, 3] -> (mean, logvar [B, t, h, w, c], cache)."""
    m, cache = self.encoder(video, cache)
    mean, logvar = jnp.split(m, 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0), cache

  def encode(self, video: jax.Array) -> jax.Array:
    """Deterministic latent (the posterior mean) of a whole video."""
    self.check_input(video)
    return self.moments(video)[0]

  def decode(self, z: jax.Array, cache: Cache = None, *, first: bool = True):
    return self.decoder(z, cache, first=first)

  def __call__(self, video: jax.Array, key: jax.Array):
    """-> (reconstruction, mean, logvar); samples z from the posterior with `key`."""
    mean, logvar, _ = self.moments(video)
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    recon, _ = self.decoder(z)
    return recon, mean, logvar


# ------------------------------------------------------------------------------ chunked


@functools.lru_cache(maxsize=16)
def _chunk_fns(graphdef) -> tuple[Callable, Callable]:
  @functools.partial(jax.jit, static_argnums=(3,))
  def enc(params, x, cache, first):
    del first  # the cache's structure (None or arrays) already tells the two cases apart
    model = nnx.merge(graphdef, params)
    mean, _, cache = model.moments(x, cache)
    return mean, cache

  @functools.partial(jax.jit, static_argnums=(3,))
  def dec(params, z, cache, first):
    model = nnx.merge(graphdef, params)
    return model.decoder(z, cache, first=first)

  return enc, dec


def encode_chunked(model: VAE, frames: Iterable[np.ndarray] | jax.Array, *,
                   chunk: int | None = None) -> Iterator[jax.Array]:
  """Encodes a video of any length in fixed memory, yielding latent chunks [B, k, h, w, c].

  `frames` is a video [B, T, H, W, 3] or an iterable of such pieces (e.g. streamed from a file);
  pieces are regrouped into frame 0 alone, then groups of `chunk` frames (a multiple of the
  temporal factor, default the factor). T must be 1 + temporal*k overall.
  """
  r = model.cfg.temporal
  chunk = chunk or r
  if chunk % r:
    raise ValueError(f"chunk={chunk} must be a multiple of the temporal factor {r}")
  graphdef, params = nnx.split(model)
  enc, _ = _chunk_fns(graphdef)
  cache, first = None, True
  for piece in _regroup(frames, chunk):
    z, cache = enc(params, jnp.asarray(piece, jnp.float32), cache, first)
    first = False
    yield z
  if cache is None:
    raise ValueError("encode_chunked: the video has no frames")


def decode_chunked(model: VAE, latents: Iterable[np.ndarray] | jax.Array, *,
                   chunk: int = 1) -> Iterator[jax.Array]:
  """Decodes latent frames `chunk` at a time in fixed memory, yielding video pieces."""
  _, dec = _chunk_fns(nnx.split(model)[0])
  params = nnx.split(model)[1]
  cache, first = None, True
  for piece in _regroup(latents, chunk, first_alone=False):
    x, cache = dec(params, jnp.asarray(piece, jnp.float32), cache, first)
    first = False
    yield x


def _regroup(pieces, chunk: int, *, first_alone: bool = True) -> Iterator[np.ndarray]:
  """Re-slices a stream of [B, n, ...] arrays along axis 1: first piece 1 frame (or `chunk` when
  not `first_alone`), then `chunk` frames each; a shorter tail is an error (causal factor)."""
  if isinstance(pieces, (np.ndarray, jax.Array)):
    pieces = [pieces]
  buf: list[np.ndarray] = []
  have, want = 0, 1 if first_alone else chunk
  for p in pieces:
    if p.ndim != 5:
      raise ValueError(f"expected pieces shaped [B, T, H, W, C], got {p.shape}")
    buf.append(p)
    have += p.shape[1]
    while have >= want:
      cat = buf[0] if len(buf) == 1 else np.concatenate([np.asarray(b) for b in buf], axis=1)
      yield cat[:, :want]
      rest = cat[:, want:]
      buf, have, want = ([rest] if rest.shape[1] else []), rest.shape[1], chunk
  if have:
    if first_alone:
      raise ValueError(f"the video's length does not fit the causal factor: {have} frame(s) left "
                       f"over after whole chunks of {chunk} (frames must be 1 + {chunk}*k; use "
                       "pad_frames)")
    cat = np.concatenate([np.asarray(b) for b in buf], axis=1)
    yield cat


def kl_loss(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """Mean over elements of KL(N(mean, exp(logvar)) || N(0, 1))."""
  return 0.5 * jnp.mean(mean ** 2 + jnp.exp(logvar) - 1.0 - logvar)
