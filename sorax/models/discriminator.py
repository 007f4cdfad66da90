"""A 3D patch discriminator for the VAE's optional adversarial loss (`loss.adversarial > 0`).

Hinge GAN on spacetime patches (as in MAGVIT / the SD VAE's PatchGAN, in 3D): it scores
overlapping patches of a video as real or reconstructed, which pushes the decoder towards sharp
edges that L1/L2 alone blur. Causal convolutions (shared with the VAE) so it also runs on one
frame.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sorax.models.vae import VAE, CausalConv3d, ChannelRMSNorm, VAEConfig


class PatchDiscriminator(nnx.Module):
  """video [B, T, H, W, 3] -> logits [B, T, H / 2^n, W / 2^n, 1] (n = len(widths))."""

  def __init__(self, widths: tuple[int, ...] = (32, 64, 128), *, rngs: nnx.Rngs):
    self.convs = nnx.List()
    self.norms = nnx.List()
    cin = 3
    for w in widths:
      self.convs.append(CausalConv3d(cin, w, (3, 3, 3), (1, 2, 2), rngs=rngs))
      self.norms.append(ChannelRMSNorm(w))
      cin = w
    self.out = CausalConv3d(cin, 1, (1, 3, 3), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for conv, norm in zip(self.convs, self.norms):
      h = jax.nn.leaky_relu(norm(conv(h)[0]), 0.2)
    return self.out(h)[0]


class VAEGAN(nnx.Module):
  """The VAE and its discriminator, trained together (one optimizer, disjoint gradients)."""

  def __init__(self, cfg: VAEConfig, disc_widths: tuple[int, ...], *, rngs: nnx.Rngs):
    self.vae = VAE(cfg, rngs=rngs)
    self.disc = PatchDiscriminator(disc_widths, rngs=rngs)


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  return 0.5 * (jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits)))


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
  return -jnp.mean(fake_logits)
