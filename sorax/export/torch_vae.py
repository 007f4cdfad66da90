"""A PyTorch reference of the sorax VAE decoder (sorax/models/vae.py's Decoder), op for op, with
the export's tensor names and the JAX shapes (conv kernels [kt, kh, kw, in, out]); the
generator's is in sorax/export/torch_ref.py, whose norms and file reading it shares.

  dec = load_vae_decoder("vae.safetensors")          # `sorax export-vae --out vae.safetensors`
  video = dec(latent)                                # [B, T, H, W, 3] in about [-1, 1]

Whole-video decoding only (no chunked conv cache). Needs the `torch` extra; imports no JAX.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

from sorax.export.torch_ref import ExportError, RMSNorm, _load_into, _read

VAE_FORMAT = "sorax.vae/1"


class CausalConv3d(nn.Module):
  """kernel [kt, kh, kw, in, out]; causal in time (kt - 1 copies of frame 0 in front),
  'SAME' zero padding in space; channels-last in and out."""

  def __init__(self, cin: int, cout: int, kernel=(3, 3, 3), stride=(1, 1, 1)):
    super().__init__()
    self.stride = tuple(stride)
    self.kernel = nn.Parameter(torch.zeros(*kernel, cin, cout))
    self.bias = nn.Parameter(torch.zeros(cout))

  def forward(self, x):
    kt, kh, kw = self.kernel.shape[:3]
    if kt > 1:
      x = torch.cat([x[:, :1].expand(-1, kt - 1, -1, -1, -1), x], 1)
    y = F.conv3d(x.permute(0, 4, 1, 2, 3), self.kernel.permute(4, 3, 0, 1, 2), self.bias,
                 stride=self.stride, padding=(0, kh // 2, kw // 2))
    return y.permute(0, 2, 3, 4, 1)


class ChannelRMSNorm(RMSNorm):
  """RMS norm over channels at each (t, h, w)."""


class ResBlock(nn.Module):
  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.norm1, self.conv1 = ChannelRMSNorm(cin), CausalConv3d(cin, cout)
    self.norm2, self.conv2 = ChannelRMSNorm(cout), CausalConv3d(cout, cout, (1, 3, 3))
    self.skip = CausalConv3d(cin, cout, (1, 1, 1)) if cin != cout else None

  def forward(self, x):
    h = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
    return (x if self.skip is None else self.skip(x)) + h


class Upsample(nn.Module):
  def __init__(self, channels: int, spatial: bool, temporal: bool):
    super().__init__()
    self.spatial, self.temporal = spatial, temporal
    self.conv = CausalConv3d(channels, channels * (2 if temporal else 1))

  def forward(self, x, first: bool = True):
    if self.spatial:
      x = x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    y = self.conv(x)
    if self.temporal:
      b, t, h, w, c2 = y.shape
      y = y.reshape(b, t, h, w, 2, c2 // 2).permute(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, -1)
      if first:
        y = y[:, 1:]
    return y


def unfold(x: torch.Tensor, p: int) -> torch.Tensor:
  """[B, T, H, W, C*p*p] -> [B, T, H*p, W*p, C] (sorax.models.vae._unfold)."""
  if p == 1:
    return x
  b, t, h, w, c = x.shape
  x = x.reshape(b, t, h, w, p, p, c // (p * p)).permute(0, 1, 2, 4, 3, 5, 6)
  return x.reshape(b, t, h * p, w * p, c // (p * p))


class RefineHead(nn.Module):
  def __init__(self, cin: int, channels: int, patch: int):
    super().__init__()
    self.patch = patch
    self.feat = CausalConv3d(cin, channels * patch ** 2, (1, 1, 1))
    self.norm1 = ChannelRMSNorm(channels + 3)
    self.conv1 = CausalConv3d(channels + 3, channels, (1, 3, 3))
    self.norm2 = ChannelRMSNorm(channels)
    self.conv2 = CausalConv3d(channels, 3, (1, 3, 3))

  def forward(self, h, rgb):
    x = torch.cat([rgb, unfold(self.feat(h), self.patch)], -1)
    x = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
    return rgb + x


class Level(nn.Module):
  def __init__(self, blocks: list[nn.Module], up: nn.Module | None):
    super().__init__()
    self.blocks, self.up = nn.ModuleList(blocks), up


class VAEDecoder(nn.Module):
  """sorax.models.vae.Decoder from a VAEConfig dict: z [B, t, h, w, c] -> video
  [B, 1 + r*(t-1), H, W, 3] (whole-video decode, `first=True`)."""

  def __init__(self, cfg: dict):
    super().__init__()
    w, sd, td = list(cfg["widths"]), cfg["spatial_down"], cfg["temporal_down"]
    self.patch = cfg.get("patch", 1)
    self.conv_in = CausalConv3d(cfg["latent_channels"], w[-1])
    self.mid = ResBlock(w[-1], w[-1])
    levels = []
    for i in reversed(range(len(w))):
      prev = w[i + 1] if i + 1 < len(w) else w[-1]
      blocks = [ResBlock(prev if j == 0 else w[i], w[i]) for j in range(cfg.get("blocks", 2))]
      levels.append(Level(blocks, Upsample(w[i], bool(sd[i - 1]), bool(td[i - 1])) if i else None))
    self.levels = nn.ModuleList(levels)
    self.norm_out = ChannelRMSNorm(w[0])
    self.conv_out = CausalConv3d(w[0], 3 * self.patch ** 2)
    refine = cfg.get("refine", 0)
    self.refine = RefineHead(w[0], refine, self.patch) if refine else None

  def forward(self, z):
    h = self.mid(self.conv_in(z))
    for level in self.levels:
      for block in level.blocks:
        h = block(h)
      if level.up is not None:
        h = level.up(h)
    h = F.silu(self.norm_out(h))
    rgb = unfold(self.conv_out(h), self.patch)
    return rgb if self.refine is None else self.refine(h, rgb)

  def decode(self, latent, mean=None, std=None):
    """A normalized DiT latent (per-channel `mean`/`std`, the weights file's latent_stats) ->
    video, as sorax.models.vae_codec.VAECodec.decode."""
    if mean is not None:
      latent = latent * torch.as_tensor(std) + torch.as_tensor(mean)
    return self(latent)


def load_vae_decoder(path: str | os.PathLike, dtype=torch.float32) -> VAEDecoder:
  """A VAE safetensors file (`sorax export-vae --out vae.safetensors`) -> its decoder."""
  tensors, meta = _read(path)
  if meta.get("format") != VAE_FORMAT:
    raise ExportError(f"{path} is not a sorax VAE file (format {meta.get('format')!r}, "
                      f"expected {VAE_FORMAT!r})")
  try:
    dec = VAEDecoder(json.loads(meta["config"]))
  except (KeyError, ValueError, TypeError) as e:
    raise ExportError(f"{path} has bad metadata: {e}") from e
  pre = "decoder."
  return _load_into(dec, {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)},
                    path, dtype)
