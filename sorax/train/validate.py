"""Held-out denoising loss: a low-variance measure of learning, cheaper than sampling.

Fixed clips (a seed the training stream never uses), fixed noise, a fixed grid of noise levels;
the model's clean-sample estimate x0_hat is compared with the clip in pixel space. Reported per
noise level and per pixel class: all pixels, object pixels (what a prompt asks for) and motion
pixels (those that change between neighbouring frames: where motion is drawn). Two runs of the
same model give the same numbers to the last bit, so recipes can be compared after a few
thousand steps, long before the oracle's rates leave zero.

    losses = val_losses(graphdef, params, codec, tokenizer, cfg)   # {"x0_mse": ..., ...}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sorax import patchify as P
from sorax.data import world
from sorax.diffusion import flow
from sorax.models.codec import from_pixels
from sorax.train.step import motion_mask, object_mask

VAL_SEED = 2_000_003  # disjoint from training (data.seed indexes) and the held-out prompts
T_GRID = (0.1, 0.3, 0.5, 0.7, 0.9)


def val_clips(n: int, height: int, width: int, frames: int, seed: int = VAL_SEED):
  """n fixed world clips with their terse captions: (videos uint8 [n, T, H, W, 3], captions)."""
  rng = np.random.default_rng(seed)
  specs = [world.random_spec(rng, height, width, frames) for _ in range(n)]
  videos = np.stack([world.render(s, height, width, frames) for s in specs])
  return videos, [world.caption(s, "terse", rng) for s in specs]


def val_losses(graphdef: nnx.GraphDef, params, codec, tokenizer, cfg, *, n: int = 64,
               batch: int = 16, t_grid=T_GRID) -> dict[str, float]:
  """Mean squared error of x0_hat (pixels in [-1, 1]) on `n` fixed clips at each t of t_grid.

  -> {"x0_mse", "x0_mse_object", "x0_mse_motion", "x0_mse_t0.1", ..., "text_gain"}: means
  over the grid, per noise level over all pixels, and what the right caption is worth at the
  noisiest level (the loss with other clips' captions minus the loss with their own)."""
  d = cfg.data
  videos, captions = val_clips(n, d.height, d.width, d.frames)
  ids, mask = tokenizer.encode(captions, d.text_len)
  patch = tuple(cfg.model.patch)
  prediction = cfg.diffusion.prediction

  @jax.jit
  def one(params, video, ids, mask, t, key):
    model = nnx.merge(graphdef, params)
    latent = codec.encode(from_pixels(video))
    x0, positions = P.patchify_batch(latent, patch)
    noise = jax.random.normal(key, x0.shape, x0.dtype)
    tb = jnp.full((x0.shape[0],), t)
    x_t = flow.interpolate(x0, noise, tb)
    x0_prev = None
    if model.dit.cfg.self_cond:  # as a sampler would: the model's own first estimate
      v = flow.to_velocity(model(x_t, positions, tb, ids, mask), x_t, tb, prediction)
      x0_prev = x_t - t * v
    v = flow.to_velocity(model(x_t, positions, tb, ids, mask, x0_prev=x0_prev), x_t, tb,
                         prediction)
    x0_hat = x_t - t * v
    pix = codec.decode(P.unpatchify_batch(x0_hat, latent.shape[1:], patch))[:, :video.shape[1]]
    err = jnp.mean(jnp.square(pix - from_pixels(video)), axis=-1)  # [B, T, H, W]
    obj, mot = object_mask(video), motion_mask(video)
    return (jnp.sum(err, (1, 2, 3)), jnp.sum(err * obj, (1, 2, 3)), jnp.sum(obj, (1, 2, 3)),
            jnp.sum(err * mot, (1, 2, 3)), jnp.sum(mot, (1, 2, 3)))

  pixels = float(np.prod(videos.shape[1:4]))
  out: dict[str, float] = {}
  sums = np.zeros((len(t_grid), 5))
  for k, t in enumerate(t_grid):
    for i in range(0, n, batch):
      key = jax.random.fold_in(jax.random.key(VAL_SEED), i)  # the same noise at every t
      parts = one(params, videos[i:i + batch], ids[i:i + batch], mask[i:i + batch],
                  jnp.float32(t), key)
      sums[k] += [float(np.sum(p)) for p in parts]
    out[f"x0_mse_t{t:g}"] = sums[k, 0] / (n * pixels)
  tot = sums.sum(0)
  out["x0_mse"] = tot[0] / (len(t_grid) * n * pixels)
  out["x0_mse_object"] = tot[1] / max(tot[2], 1.0)
  out["x0_mse_motion"] = tot[3] / max(tot[4], 1.0)
  # How much the caption helps where the layout is decided: at the noisiest level, the loss
  # with every clip given another clip's caption, minus the loss with its own (0: text unused).
  t_hi = max(t_grid)
  wrong = 0.0
  for i in range(0, n, batch):
    key = jax.random.fold_in(jax.random.key(VAL_SEED), i)
    other = (np.arange(i, min(i + batch, n)) + n // 2) % n
    parts = one(params, videos[i:i + batch], ids[other], mask[other], jnp.float32(t_hi), key)
    wrong += float(np.sum(parts[0]))
  out["text_gain"] = wrong / (n * pixels) - out[f"x0_mse_t{t_hi:g}"]
  return {k: round(float(v), 5) for k, v in out.items()}
