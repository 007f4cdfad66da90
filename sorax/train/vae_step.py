"""The pure, jitted VAE training step: reconstruction (L1 + L2) + KL, AdamW, EMA."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sorax.models import discriminator as disc_lib
from sorax.models import vae as vae_lib
from sorax.models.codec import from_pixels
from sorax.train.state import TrainState, ema_update


@dataclasses.dataclass(frozen=True)
class VAELossConfig:
  l1: float = 1.0           # L1 keeps the world's hard edges sharp
  l2: float = 1.0           # L2 is what PSNR measures
  kl: float = 1e-6          # small: a near-deterministic latent, just regularized in scale
  crop: tuple[int, int] | None = None  # train on random crops (the VAE is fully convolutional)
  ema_decay: float = 0.999
  adversarial: float = 0.0  # > 0: hinge PatchGAN term (the model is then a VAEGAN)
  adversarial_start: int = 0  # steps of reconstruction-only training before the GAN joins


def psnr(mse: jax.Array) -> jax.Array:
  """PSNR in dB of an MSE measured on [-1, 1] pixels (peak-to-peak 2)."""
  return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-12))


def random_crop(rng: jax.Array, video: jax.Array, size: tuple[int, int]) -> jax.Array:
  """video [B, T, H, W, C] -> [B, T, h, w, C], an independent crop per example."""
  b, t, h, w, c = video.shape
  ch, cw = size
  if ch > h or cw > w:
    raise ValueError(f"crop {size} is larger than the video's {h}x{w}")
  r_h, r_w = jax.random.split(rng)
  top = jax.random.randint(r_h, (b,), 0, h - ch + 1)
  left = jax.random.randint(r_w, (b,), 0, w - cw + 1)
  crop = lambda v, i, j: jax.lax.dynamic_slice(v, (0, i, j, 0), (t, ch, cw, c))
  return jax.vmap(crop)(video, top, left)


def reconstruction_losses(recon: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
  err = recon.astype(jnp.float32) - target
  mse = jnp.mean(err ** 2)
  return {"l1": jnp.mean(jnp.abs(err)), "mse": mse, "psnr": psnr(mse)}


def make_vae_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                        cfg: VAELossConfig, temporal: int):
  """-> train_step(state, batch) -> (state, metrics); batch: video uint8 [B, T, H, W, 3]."""

  gan = cfg.adversarial > 0

  def loss_fn(params, x, rng, adv_on):
    model = nnx.merge(graphdef, params)
    vae = model.vae if gan else model
    recon, mean, logvar = vae(x, rng)
    m = reconstruction_losses(recon, x)
    m["kl"] = vae_lib.kl_loss(mean, logvar)
    loss = cfg.l1 * m["l1"] + cfg.l2 * m["mse"] + cfg.kl * m["kl"]
    if gan:
      m["g_adv"] = disc_lib.hinge_g_loss(model.disc(recon))
      loss = loss + adv_on * cfg.adversarial * m["g_adv"]
    m["latent_std"] = jnp.std(mean)
    return loss, (m, recon)

  def disc_loss(params, x, recon):
    disc = nnx.merge(graphdef, params).disc
    return disc_lib.hinge_d_loss(disc(x), disc(jax.lax.stop_gradient(recon)))

  def train_step(state: TrainState, batch: dict[str, Any]):
    rng = jax.random.fold_in(state.rng, state.step)
    r_crop, r_z = jax.random.split(rng)
    x = vae_lib.pad_frames(from_pixels(batch["video"]), temporal)
    if cfg.crop is not None:
      x = random_crop(r_crop, x, cfg.crop)
    adv_on = (state.step >= cfg.adversarial_start).astype(jnp.float32)
    (loss, (m, recon)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, x, r_z, adv_on)
    if gan:
      # One optimizer, disjoint gradients: the VAE descends the generator loss (its own
      # gradients from loss_fn), the discriminator descends the hinge loss.
      m["d_loss"], d_grads = jax.value_and_grad(disc_loss)(state.params, x, recon)
      grads["disc"] = jax.tree.map(lambda g: adv_on * g, d_grads["disc"])
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema, params, cfg.ema_decay, state.step)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **m}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=ema,
                      rng=state.rng), metrics

  return train_step
