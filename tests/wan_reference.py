"""Wan2.1's text-to-video DiT in PyTorch, transcribed from the public code
(github.com/Wan-Video/Wan2.1, wan/modules/model.py: WanModel with model_type "t2v", Apache-2.0)
for the import test: the module names, parameter shapes and the forward pass are Wan's, so
`WanT2V(...).state_dict()` is a Wan-layout state dict. Left out: diffusers' ConfigMixin, flash
attention (torch's SDPA instead), windowed attention, variable-length batches (every sequence
here fills `seq_len`), and the image-to-video branches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoidal_embedding_1d(dim, position):
  half = dim // 2
  position = position.type(torch.float64)
  sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half).to(position).div(half)))
  return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def rope_params(max_seq_len, dim, theta=10000):
  freqs = torch.outer(torch.arange(max_seq_len),
                      1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float64).div(dim)))
  return torch.polar(torch.ones_like(freqs), freqs)


def rope_apply(x, grid, freqs):
  n, c = x.size(2), x.size(3) // 2
  freqs = freqs.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
  f, h, w = grid
  s = f * h * w
  x_c = torch.view_as_complex(x.to(torch.float64).reshape(x.size(0), s, n, -1, 2))
  fr = torch.cat([freqs[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                  freqs[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
                  freqs[2][:w].view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1).reshape(s, 1, -1)
  return torch.view_as_real(x_c * fr).flatten(3).float()


class WanRMSNorm(nn.Module):
  def __init__(self, dim, eps=1e-6):
    super().__init__()
    self.eps = eps
    self.weight = nn.Parameter(torch.ones(dim))

  def forward(self, x):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)).type_as(x) * \
        self.weight


class WanLayerNorm(nn.LayerNorm):
  def __init__(self, dim, eps=1e-6, elementwise_affine=False):
    super().__init__(dim, elementwise_affine=elementwise_affine, eps=eps)


class WanSelfAttention(nn.Module):
  def __init__(self, dim, num_heads, qk_norm=True, eps=1e-6):
    super().__init__()
    self.num_heads, self.head_dim = num_heads, dim // num_heads
    self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
    self.norm_q = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()
    self.norm_k = WanRMSNorm(dim, eps) if qk_norm else nn.Identity()

  def attend(self, q, k, v):  # [B, L, N, D] each
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return self.o(out.transpose(1, 2).flatten(2))

  def forward(self, x, grid, freqs):
    b, s, n, d = *x.shape[:2], self.num_heads, self.head_dim
    q = self.norm_q(self.q(x)).view(b, s, n, d)
    k = self.norm_k(self.k(x)).view(b, s, n, d)
    v = self.v(x).view(b, s, n, d)
    return self.attend(rope_apply(q, grid, freqs), rope_apply(k, grid, freqs), v)


class WanT2VCrossAttention(WanSelfAttention):
  def forward(self, x, context):
    b, n, d = x.size(0), self.num_heads, self.head_dim
    q = self.norm_q(self.q(x)).view(b, -1, n, d)
    k = self.norm_k(self.k(context)).view(b, -1, n, d)
    v = self.v(context).view(b, -1, n, d)
    return self.attend(q, k, v)


class WanAttentionBlock(nn.Module):
  def __init__(self, dim, ffn_dim, num_heads, qk_norm=True, eps=1e-6):
    super().__init__()
    self.norm1 = WanLayerNorm(dim, eps)
    self.self_attn = WanSelfAttention(dim, num_heads, qk_norm, eps)
    self.norm3 = WanLayerNorm(dim, eps, elementwise_affine=True)  # cross_attn_norm=True
    self.cross_attn = WanT2VCrossAttention(dim, num_heads, qk_norm, eps)
    self.norm2 = WanLayerNorm(dim, eps)
    self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"),
                             nn.Linear(ffn_dim, dim))
    self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

  def forward(self, x, e, grid, freqs, context):
    e = (self.modulation + e).chunk(6, dim=1)
    y = self.self_attn(self.norm1(x).float() * (1 + e[1]) + e[0], grid, freqs)
    x = x + y * e[2]
    x = x + self.cross_attn(self.norm3(x), context)
    y = self.ffn(self.norm2(x).float() * (1 + e[4]) + e[3])
    return x + y * e[5]


class Head(nn.Module):
  def __init__(self, dim, out_dim, patch_size, eps=1e-6):
    super().__init__()
    self.norm = WanLayerNorm(dim, eps)
    self.head = nn.Linear(dim, math.prod(patch_size) * out_dim)
    self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

  def forward(self, x, e):
    e = (self.modulation + e.unsqueeze(1)).chunk(2, dim=1)
    return self.head(self.norm(x) * (1 + e[1]) + e[0])


class WanT2V(nn.Module):
  def __init__(self, patch_size=(1, 2, 2), text_len=512, in_dim=16, dim=2048, ffn_dim=8192,
               freq_dim=256, text_dim=4096, out_dim=16, num_heads=16, num_layers=32,
               qk_norm=True, eps=1e-6):
    super().__init__()
    self.patch_size, self.text_len, self.freq_dim, self.dim = patch_size, text_len, freq_dim, dim
    self.out_dim = out_dim
    self.patch_embedding = nn.Conv3d(in_dim, dim, kernel_size=patch_size, stride=patch_size)
    self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"),
                                        nn.Linear(dim, dim))
    self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
    self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
    self.blocks = nn.ModuleList([WanAttentionBlock(dim, ffn_dim, num_heads, qk_norm, eps)
                                 for _ in range(num_layers)])
    self.head = Head(dim, out_dim, patch_size, eps)
    d = dim // num_heads
    self.freqs = torch.cat([rope_params(1024, d - 4 * (d // 6)), rope_params(1024, 2 * (d // 6)),
                            rope_params(1024, 2 * (d // 6))], dim=1)

  def forward(self, x, t, context):
    """x [B, C, F, H, W] latents; t [B] timesteps in [0, 1000]; context [B, L <= text_len,
    text_dim] -> [B, C, F, H, W]."""
    x = self.patch_embedding(x)
    grid = tuple(x.shape[2:])
    x = x.flatten(2).transpose(1, 2)
    e = self.time_embedding(sinusoidal_embedding_1d(self.freq_dim, t).float())
    e0 = self.time_projection(e).unflatten(1, (6, self.dim))
    pad = context.new_zeros(context.size(0), self.text_len - context.size(1), context.size(2))
    context = self.text_embedding(torch.cat([context, pad], dim=1))
    for block in self.blocks:
      x = block(x, e0, grid, self.freqs, context)
    x = self.head(x, e)
    u = x.view(x.size(0), *grid, *self.patch_size, self.out_dim)
    u = torch.einsum("bfhwpqrc->bcfphqwr", u)
    return u.reshape(x.size(0), self.out_dim, *[g * p for g, p in zip(grid, self.patch_size)])
