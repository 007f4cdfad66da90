"""Ghost copies: training inputs that hold the sampler's most common mistake.

Half of v14's wrong straight tracks are an object drawn twice (a faint or full second blob of
its colour beside the real one; BUILD_NOTES, "Why straight tracks fail"). Training inputs are
real clips plus noise, which never hold a second copy, so the model is never taught what to do
with one it drew itself (exposure bias; input perturbation, Ning et al. 2023, is the generic
cure). `ghost_video` pastes a shifted copy of every object pixel at a random strength; the
train step feeds the noised ghosted clip while the target stays the clean clip
(`diffusion.ghost_rate`, sorax/train/step.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ghost_video(rng: jax.Array, video: jax.Array, objects: jax.Array, *, max_alpha: float,
                max_shift: int) -> jax.Array:
  """A copy of each clip's object pixels, shifted, blended over the clip.

  video uint8 [B, T, H, W, 3]; objects float [B, T, H, W] (1 on object pixels) -> float32
  [B, T, H, W, 3] in [0, 255]: the clip where no shifted object pixel lands, else
  (1 - a) clip + a shifted clip, with one shift (dy, dx), each in [-max_shift, max_shift] and
  not both zero, and one strength a ~ U(0, max_alpha) per clip. The shift wraps around the
  canvas (jnp.roll), like an object half out of view appearing on the far side, which a
  sampler also draws.
  """
  if video.ndim != 5 or objects.shape != video.shape[:4]:
    raise ValueError(f"video {video.shape} must be [B, T, H, W, 3] and objects its [B, T, H, W]")
  b = video.shape[0]
  r_shift, r_alpha, r_flip = jax.random.split(rng, 3)
  shift = jax.random.randint(r_shift, (b, 2), -max_shift, max_shift + 1)
  # Never (0, 0): a copy on top of the object is no copy.
  shift = jnp.where(jnp.all(shift == 0, axis=1, keepdims=True),
                    jnp.where(jax.random.bernoulli(r_flip, 0.5, (b, 1)), 1, -1)
                    * jnp.array([[0, 1]]), shift)
  alpha = jax.random.uniform(r_alpha, (b,), maxval=max_alpha)
  v = video.astype(jnp.float32)

  def one(clip, mask, s, a):  # clip [T, H, W, 3], mask [T, H, W]
    moved = jnp.roll(clip, (s[0], s[1]), axis=(1, 2))
    where = jnp.roll(mask, (s[0], s[1]), axis=(1, 2))[..., None]
    return clip + a * where * (moved - clip)

  return jax.vmap(one)(v, objects.astype(jnp.float32), shift, alpha)
