"""The pure, jitted training step: flow-matching loss on latent tokens, AdamW, EMA."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sorax import patchify as P
from sorax.diffusion import conditioning as cond
from sorax.diffusion import flow
from sorax.models.codec import from_pixels
from sorax.models.text import BOS_ID, null_text
from sorax.train import ghosts
from sorax.train.state import TrainState, ema_update


@dataclasses.dataclass(frozen=True)
class StepConfig:
  patch: tuple[int, int, int]
  t_mean: float
  t_std: float
  shift: float
  text_dropout: float
  ema_decay: float
  ema_warmup: bool = True  # False for a warm start (state.ema_update)
  prediction: str = "velocity"  # what the network outputs: flow.PREDICTIONS
  # Loss weight of object pixels relative to background/wall pixels, minus 1 (0: plain mean).
  # Needs pixel-aligned latents (`fold`, the space-to-depth codec) and rendered world video.
  object_weight: float = 0.0
  # Loss weight, minus 1, of pixels that change between a frame and its neighbour (the leading
  # and trailing edges of moving, growing and shrinking objects: where motion is drawn). Adds to
  # object_weight; the same codec and data needs.
  motion_weight: float = 0.0
  # Joint image training (Ho et al. 2022): each step also denoises `images_per_clip` single
  # frames (T = 1) drawn from every clip of the batch, as one-frame videos with the clip's
  # caption, weighted `image_weight` in the loss and timesteps warped by `image_shift`.
  images_per_clip: int = 0
  image_weight: float = 0.5
  image_shift: float = 1.0
  # Masked conditioning (sorax/diffusion/conditioning.py): (mode, rate) pairs; each clip draws a
  # mode, its given latent frames enter clean with t = 0 and are left out of the loss. Empty or
  # only "none": plain text-to-video.
  conditioning: tuple[tuple[str, float], ...] = ()
  null_tokens: tuple[int, ...] = (BOS_ID,)  # the tokenizer's empty prompt (text dropout)
  # Weight of an auxiliary loss on the jointly trained text encoder: each output token must
  # name its own input token through the (tied) embedding table (`text_identity_loss`). 0: off.
  text_id_weight: float = 0.0
  # Weight of the slot loss: the DiT's attribute slots (model.slots) must read back what the
  # caption states of each object and of the scene (batch["labels"], `slot_loss`). 0: off.
  slot_weight: float = 0.0
  # The palette head (model.palette): the colours (RGB uint8) its classes stand for, and the
  # weight of the per-pixel cross-entropy of the true colour (palette_loss). 0: squared error
  # alone.
  palette: tuple[tuple[int, int, int], ...] = ()
  palette_weight: float = 0.0
  # Weight of the track loss (track_loss): each object colour's centre per frame, read from the
  # palette head, against the true one. Needs palette_weight's palette and rendered video.
  track_weight: float = 0.0
  # Loss weight, minus 1, of the made token frames next to a given one (masked conditioning):
  # where an extension, fill or connection must continue the given frames without a jump.
  seam_weight: float = 0.0
  # Self-conditioning (model.self_cond): the share of steps on which the model first makes a
  # clean estimate (no gradient) and then denoises again given it; the rest get zeros.
  self_cond_rate: float = 0.0
  # Ghost copies (sorax/train/ghosts.py): the share of clips whose noised input also holds a
  # shifted copy of their objects at strength U(0, ghost_alpha), shift up to ghost_shift px,
  # while the target stays the clean clip; x0-prediction and rendered video only. 0: off.
  ghost_rate: float = 0.0
  ghost_alpha: float = 0.6
  ghost_shift: int = 8


# Colours that are not objects in the world (WORLD.md): the four backgrounds and the wall.
_NOT_OBJECT = jnp.array([(12, 12, 12), (18, 24, 72), (16, 56, 30), (72, 18, 24), (128, 128, 128)],
                        jnp.int32)


def object_mask(video: jax.Array) -> jax.Array:
  """uint8 world video [..., 3] -> float32 [...]: 1 where the pixel is an object colour (any
  colour but the backgrounds' and the wall's), else 0."""
  v = video.astype(jnp.int32)[..., None, :]  # [..., 1, 3]
  is_bg = jnp.any(jnp.all(v == _NOT_OBJECT, axis=-1), axis=-1)
  return 1.0 - is_bg.astype(jnp.float32)


def motion_mask(video: jax.Array) -> jax.Array:
  """uint8 video [B, T, H, W, 3] -> float32 [B, T, H, W]: 1 where the pixel differs from the
  same pixel in the previous or the next frame, else 0 (all 0 for T = 1)."""
  v = video.astype(jnp.int32)
  step = jnp.any(v[:, 1:] != v[:, :-1], axis=-1)  # [B, T-1, H, W]: frame k+1 differs from k
  none = jnp.zeros((step.shape[0], 1, *step.shape[2:]), bool)
  return (jnp.concatenate([none, step], 1) | jnp.concatenate([step, none], 1)).astype(jnp.float32)


def loss_weight(video: jax.Array, object_weight: float, motion_weight: float) -> jax.Array:
  """uint8 world video [B, T, H, W, 3] -> per-pixel loss weight float32 [B, T, H, W]:
  1 + object_weight on object pixels + motion_weight on pixels that change between frames."""
  return 1.0 + object_weight * object_mask(video) + motion_weight * motion_mask(video)


def text_identity_loss(features: jax.Array, table: jax.Array, ids: jax.Array,
                       mask: jax.Array) -> jax.Array:
  """Mean cross-entropy of reading each token's id back from the text encoder's output.

  features [B, L, D] (the encoder's output), table [V, D] (its input embedding, tied as the
  read-out), ids int [B, L], mask bool [B, L] -> scalar. Why: trained only through the DiT,
  our encoder let words the DiT could not yet use drift together ("left" and "right" came out
  at cosine 0.993 in the shipped v7), so the DiT was never told the direction of a move. This
  keeps every word recoverable from its output.
  """
  logits = jnp.einsum("bld,vd->blv", features.astype(jnp.float32), table.astype(jnp.float32))
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, ids)
  m = mask.astype(jnp.float32)
  return jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0)


def slot_loss(logits: jax.Array, labels: jax.Array, classes: tuple[int, ...]) -> jax.Array:
  """Cross-entropy of each slot's attribute groups, summed over groups, averaged over the
  labelled ones. logits [B, K, sum(classes)], labels int [B, K, G] (-1: not stated) -> scalar."""
  total, count = 0.0, 0.0
  start = 0
  for g, n in enumerate(classes):
    lab = labels[..., g]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits[..., start:start + n],
                                                         jnp.maximum(lab, 0))
    valid = (lab >= 0).astype(jnp.float32)
    total += jnp.sum(ce * valid)
    count += jnp.sum(valid)
    start += n
  return total / jnp.maximum(count, 1.0) * len(classes)


def palette_index(video: jax.Array, palette: tuple[tuple[int, int, int], ...]) -> jax.Array:
  """uint8 video [..., 3] -> int32 [...]: each pixel's index in `palette`, -1 if none."""
  pal = jnp.asarray(palette, jnp.int32)  # [K, 3]
  hit = jnp.all(video.astype(jnp.int32)[..., None, :] == pal, axis=-1)  # [..., K]
  return jnp.where(hit.any(-1), jnp.argmax(hit, axis=-1), -1).astype(jnp.int32)


def palette_loss(logits: jax.Array, labels: jax.Array, weight: jax.Array | None = None,
                 keep: jax.Array | None = None) -> jax.Array:
  """Weighted mean cross-entropy of each pixel's colour. logits [B, N, M, K]; labels int
  [B, N, M] (-1: not a palette colour, skipped); weight [B, N, M]; keep bool [B, N] tokens."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.maximum(labels, 0))
  w = (labels >= 0).astype(jnp.float32)
  if weight is not None:
    w = w * weight
  if keep is not None:
    w = w * keep[..., None].astype(jnp.float32)
  return jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)


def pixel_where(video_shape: tuple[int, ...]) -> jax.Array:
  """[B, T, H, W, 3] -> float32 [B, T, H, W, 3]: each pixel's (frame, y, x)."""
  b, t, h, w = video_shape[:4]
  grids = jnp.meshgrid(jnp.arange(t), jnp.arange(h), jnp.arange(w), indexing="ij")
  return jnp.broadcast_to(jnp.stack(grids, -1).astype(jnp.float32), (b, t, h, w, 3))


def track_loss(logits: jax.Array, labels: jax.Array, where: jax.Array, num_frames: int,
               is_object: jax.Array, keep: jax.Array | None = None,
               scale: float = 8.0) -> jax.Array:
  """Mean squared distance, in units of `scale` px, between each object colour's centre in each
  frame as the palette head predicts it (its probabilities' centre of mass) and the true one.

  logits [B, N, M, K]; labels int [B, N, M] (-1: no palette colour); where [B, N, M, 3] each
  pixel's (frame, y, x); is_object bool [K] (backgrounds and the wall have no track); keep bool
  [B, N] (given tokens: False). Colours absent from a frame are skipped. Why: the per-pixel
  losses say "not here" and "here" for an object drawn 3 px off its track, but nothing pulls it
  along the frame towards its place; a centre does, and straight motions fail mostly as tracks
  that jump or drift (BUILD_NOTES, v13). Where an object's pixel count does not depend on its
  place (away from edges and walls) the centre of the posterior mean is the posterior's mean
  centre, so this mostly adds a direction to the gradient, not a different optimum.
  """
  k = logits.shape[-1]
  p = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)  # [B, N, M, K]
  q = jax.nn.one_hot(labels, k, dtype=jnp.float32)  # label -1 -> all zeros
  f = jax.nn.one_hot(jnp.round(where[..., 0]).astype(jnp.int32), num_frames, dtype=jnp.float32)
  if keep is not None:
    f = f * keep[:, :, None, None].astype(jnp.float32)  # [B, N, M, T]
  pos = where[..., 1:]  # [B, N, M, 2]

  def centre(r):  # -> mass [B, T, K], centre of mass [B, T, K, 2]
    mass = jnp.einsum("bnmk,bnmt->btk", r, f)
    first = jnp.einsum("bnmkd,bnmt->btkd", r[..., None] * pos[..., None, :], f)
    return mass, first

  mass_p, first_p = centre(p)
  mass_q, first_q = centre(q)
  c_p = first_p / (mass_p[..., None] + 1e-3)
  c_q = first_q / jnp.maximum(mass_q, 1.0)[..., None]
  valid = ((mass_q > 0) & is_object).astype(jnp.float32)  # [B, T, K]
  d2 = jnp.sum((c_p - c_q) ** 2, axis=-1) / scale ** 2
  return jnp.sum(d2 * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def drop_text(rng: jax.Array, ids: jax.Array, mask: jax.Array, p: float,
              null: tuple[int, ...] = (BOS_ID,)):
  """Replaces each example's prompt by the null prompt (`null` tokens) with probability p."""
  drop = jax.random.bernoulli(rng, p, (ids.shape[0], 1))
  null_ids, null_mask = null_text(ids, null)
  return jnp.where(drop, null_ids, ids), jnp.where(drop, null_mask, mask)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    encode: Callable[[jax.Array], jax.Array], cfg: StepConfig,
                    normalize: Callable[[jax.Array], jax.Array] | None = None,
                    fold: Callable[[jax.Array], jax.Array] | None = None):
  """-> train_step(state, batch) -> (state, metrics); pure, ready for jax.jit.

  batch: ids int32 [B, L], mask bool [B, L], and either video uint8 [B, T, H, W, 3] (encoded here
  by `encode`: [-1, 1] video -> latent [B, t, h, w, c]) or latent float32 [B, t, h, w, c] from a
  latent cache (raw codec output, mapped by `normalize`). `fold` maps a per-pixel map
  [B, T, H, W, 3] onto the latent's layout (the object-weighted loss needs it).
  """
  if (cfg.object_weight or cfg.motion_weight or cfg.palette_weight) and fold is None:
    raise ValueError("diffusion.object_weight/motion_weight need a pixel-aligned codec "
                     "(so does palette_weight) "
                     "(space_to_depth), "
                     "whose fold puts pixel weights on the latent")
  if cfg.track_weight and not (cfg.palette_weight and cfg.palette):
    raise ValueError("diffusion.track_weight reads tracks from the palette head: set "
                     "model.palette_head=True and diffusion.palette_weight > 0")
  not_object = {tuple(int(v) for v in c) for c in np.asarray(_NOT_OBJECT)}
  is_object = jnp.asarray([tuple(c) not in not_object for c in cfg.palette], bool)
  if cfg.ghost_rate and cfg.prediction != "x0":
    raise ValueError("diffusion.ghost_rate needs x0-prediction (the target is the clean clip "
                     f"whatever the input holds), got prediction={cfg.prediction!r}")
  if cfg.images_per_clip and cfg.patch[0] != 1:
    raise ValueError(f"joint image training needs temporal patch 1, got patch {cfg.patch}")
  rates = dict(cfg.conditioning)
  if cfg.seam_weight and not (rates and cond.is_active(rates)):
    raise ValueError("diffusion.seam_weight weighs the frames next to given ones: set "
                     "conditioning rates that give frames (e.g. conditioning.prefix > 0)")
  conditioned = bool(rates) and cond.is_active(rates)
  if rates:
    cond.check_rates(rates)

  def given_tokens(rng, latent_shape):
    """A mask row per clip from a fixed table of drawn modes -> given tokens [B, N]."""
    b, frames = latent_shape[0], latent_shape[1]
    table = jnp.asarray(cond.mode_table(rates, frames))  # built at trace time: static shapes
    rows = table[jax.random.randint(rng, (b,), 0, table.shape[0])]
    grid = P.grid_shape(latent_shape[1:], cfg.patch)
    return cond.token_mask(rows, grid, cfg.patch)

  def denoise_loss(model, x0, positions, ids, mask, rng, weight, shift, given=None,
                   labels=None, track=None, ghost=None, seam=None):
    r_t, r_noise, r_drop, r_sc = jax.random.split(rng, 4)
    t = flow.sample_timesteps(r_t, x0.shape[0], mean=cfg.t_mean, std=cfg.t_std, shift=shift)
    noise = jax.random.normal(r_noise, x0.shape, x0.dtype)
    ids, mask = drop_text(r_drop, ids, mask, cfg.text_dropout, cfg.null_tokens)
    x_t = flow.interpolate(x0, noise, t)
    # The model sees x_in; the velocity is read against the clean x_t, so with x0-prediction
    # the loss is |x0_hat - x0|^2 / t^2 whatever the ghost added.
    x_in = x_t if ghost is None else x_t + flow._bcast(1.0 - t, x_t) * ghost
    keep = None
    if given is not None:  # given tokens: clean, t = 0, no loss
      x_t = cond.hold(x_t, x0, given)
      x_in = cond.hold(x_in, x0, given)
      t = cond.per_token_time(t, given)
      keep = ~given
      if seam is not None:  # made tokens beside a given frame weigh 1 + seam_weight
        keep = keep * (1.0 + cfg.seam_weight * (seam & keep))
    x0_prev = None
    if cfg.self_cond_rate:
      def estimate(_):  # the model's own clean estimate, as a sampler would pass it
        v0 = flow.to_velocity(model(x_t, positions, t, ids, mask), x_t, t, cfg.prediction)
        return jax.lax.stop_gradient(x_t - flow._bcast(t, x_t) * v0)
      use = jax.random.bernoulli(r_sc, cfg.self_cond_rate)
      x0_prev = jax.lax.cond(use, estimate, lambda _: jnp.zeros_like(x_t), None)
    out, logits = model(x_in, positions, t, ids, mask, return_logits=True, x0_prev=x0_prev)
    pred = flow.to_velocity(out, x_t, t, cfg.prediction)
    loss = flow.flow_loss(pred, x0, noise, mask=keep, weight=weight)
    if cfg.palette_weight and labels is not None:
      m = logits.shape[2]  # pixels per token; weights are per channel, the same on each
      w = None if weight is None else weight.reshape(*weight.shape[:2], m, -1)[..., 0]
      loss = loss + cfg.palette_weight * palette_loss(logits, labels, w, keep)
      if cfg.track_weight and track is not None:
        where, frames = track
        loss = loss + cfg.track_weight * track_loss(logits, labels, where, frames, is_object, keep)
    return loss

  def prepare(video, latent):
    """-> (x0 tokens, positions, loss weights or None, palette labels or None, (each pixel's
    (frame, y, x) [B, N, M, 3], frames) or None) of a video batch (or cached latents)."""
    if latent is None:
      latent = encode(from_pixels(video))
    x0, positions = P.patchify_batch(latent, cfg.patch)
    labels = None
    if cfg.palette_weight:
      if video is None:
        raise ValueError("diffusion.palette_weight needs rendered video, not a latent cache")
      idx = palette_index(video, cfg.palette).astype(jnp.float32)
      folded, _ = P.patchify_batch(fold(jnp.repeat(idx[..., None], 3, axis=-1)), cfg.patch)
      labels = jnp.round(folded.reshape(*folded.shape[:2], -1, 3)[..., 0]).astype(jnp.int32)
    track = None
    if cfg.track_weight:
      where, _ = P.patchify_batch(fold(pixel_where(video.shape)), cfg.patch)
      track = (where.reshape(*where.shape[:2], -1, 3), video.shape[1])
    weight = None
    if cfg.object_weight or cfg.motion_weight:
      if video is None:
        raise ValueError("diffusion.object_weight/motion_weight need rendered video, not a "
                         "latent cache")
      w = loss_weight(video, cfg.object_weight, cfg.motion_weight)
      weight, _ = P.patchify_batch(fold(jnp.repeat(w[..., None], 3, axis=-1)), cfg.patch)
    return x0, positions, weight, labels, track

  def train_step(state: TrainState, batch: dict[str, Any]):
    rng = jax.random.fold_in(state.rng, state.step)
    r_clip, r_img, r_pick, r_cond = jax.random.split(rng, 4)
    latent = None
    if "latent" in batch:
      latent = batch["latent"] if normalize is None else normalize(batch["latent"])
    if latent is None:
      latent = encode(from_pixels(batch["video"]))
    clips = prepare(batch.get("video"), latent)
    given = given_tokens(r_cond, latent.shape) if conditioned else None
    # Tokens of the token frames next to a given one (make_train_step checked conditioning).
    seam = (cond.near_given(given, P.grid_shape(latent.shape[1:], cfg.patch), 1)
            if cfg.seam_weight else None)
    ghost = None
    if cfg.ghost_rate:
      if "video" not in batch:
        raise ValueError("diffusion.ghost_rate needs rendered video, not a latent cache")
      r_ghost, r_on = jax.random.split(jax.random.fold_in(rng, 7))
      video = batch["video"]
      ghosted = ghosts.ghost_video(r_ghost, video, object_mask(video),
                                   max_alpha=cfg.ghost_alpha, max_shift=cfg.ghost_shift)
      g_tok, _ = P.patchify_batch(encode(from_pixels(ghosted)), cfg.patch)
      on = jax.random.bernoulli(r_on, cfg.ghost_rate, (video.shape[0], 1, 1))
      ghost = jnp.where(on, g_tok - clips[0], 0.0)
    images = None
    if cfg.images_per_clip:
      if "video" not in batch:
        raise ValueError("joint image training needs rendered video, not a latent cache")
      video = batch["video"]  # [B, T, H, W, 3]
      b, k = video.shape[0], cfg.images_per_clip
      pick = jax.random.randint(r_pick, (b, k), 0, video.shape[1])
      frames = video[jnp.arange(b)[:, None], pick].reshape((b * k, 1) + video.shape[2:])
      images = prepare(frames, None)
      img_ids = jnp.repeat(batch["ids"], k, axis=0)
      img_mask = jnp.repeat(batch["mask"], k, axis=0)

    def loss_fn(params):
      model = nnx.merge(graphdef, params)
      loss = denoise_loss(model, *clips[:2], batch["ids"], batch["mask"], r_clip, clips[2],
                          cfg.shift, given, clips[3], clips[4], ghost, seam)
      if images is not None:
        loss_img = denoise_loss(model, *images[:2], img_ids, img_mask, r_img, images[2],
                                cfg.image_shift, labels=images[3], track=images[4])
        loss = (loss + cfg.image_weight * loss_img) / (1.0 + cfg.image_weight)
      aux = {}
      if cfg.text_id_weight:
        aux["text_id_loss"] = text_identity_loss(
            model.encode_text(batch["ids"], batch["mask"]), model.text.embed.embedding[...],
            batch["ids"], batch["mask"])
        loss = loss + cfg.text_id_weight * aux["text_id_loss"]
      if cfg.slot_weight:
        logits = model.dit.slot_logits(model.encode_text(batch["ids"], batch["mask"]),
                                       batch["mask"])
        aux["slot_loss"] = slot_loss(logits, batch["labels"], model.dit.cfg.slot_classes)
        loss = loss + cfg.slot_weight * aux["slot_loss"]
      return loss, aux

    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = ema_update(state.ema, params, cfg.ema_decay, state.step, cfg.ema_warmup)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}
    new = TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=ema,
                     rng=state.rng)
    return new, metrics

  return train_step
