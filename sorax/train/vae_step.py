"""The pure, jitted VAE training step: reconstruction (L1 + L2) + KL, AdamW, EMA."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sorax.models import vae as vae_lib
from sorax.models.codec import from_pixels
from sorax.train.state import TrainState


@dataclasses.dataclass(frozen=True)
class VAELossConfig:
  l1: float = 1.0           # L1 keeps the world's hard edges sharp
  l2: float = 1.0           # L2 is what PSNR measures
  kl: float = 1e-6          # small: a near-deterministic latent, just regularized in scale
  crop: tuple[int, int] | None = None  # train on random crops (the VAE is fully convolutional)
  ema_decay: float = 0.999


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

  def loss_fn(params, x, rng):
    model = nnx.merge(graphdef, params)
    recon, mean, logvar = model(x, rng)
    m = reconstruction_losses(recon, x)
    m["kl"] = vae_lib.kl_loss(mean, logvar)
    loss = cfg.l1 * m["l1"] + cfg.l2 * m["mse"] + cfg.kl * m["kl"]
    m["latent_std"] = jnp.std(mean)
    return loss, m

  def train_step(state: TrainState, batch: dict[str, Any]):
    rng = jax.random.fold_in(state.rng, state.step)
    r_crop, r_z = jax.random.split(rng)
    x = vae_lib.pad_frames(from_pixels(batch["video"]), temporal)
    if cfg.crop is not None:
      x = random_crop(r_crop, x, cfg.crop)
    (loss, m), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, r_z)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: e * cfg.ema_decay + p * (1 - cfg.ema_decay), state.ema, params)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **m}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=ema,
                      rng=state.rng), metrics

  return train_step
