"""Masked conditioning: some latent frames are given clean, the model makes the rest.

One scheme serves every verb (animate, extend forward/backward, fill, interpolate, connect, loop):
a bool mask over latent frames marks the given ones. In training a random mode per example picks
the mask; given tokens enter the DiT clean (x_t = x0) with a per-token timestep of 0, and the
loss skips them. In sampling the same tokens are held at their known values with t = 0 and zero
velocity, so the sampler never changes them.

Modes (the registry training samples from and verbs name): each is
`mode(rng, frames) -> bool [frames]`, drawing its own lengths from `rng` (a numpy Generator), or
fixed by keyword for sampling (`prefix(None, 9, k=3)`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Mode = Callable[..., np.ndarray]


def _mask(frames: int, idx) -> np.ndarray:
  m = np.zeros(frames, bool)
  m[idx] = True
  return m


def _k(rng, frames: int, k: int | None) -> int:
  """Given-frame count for prefix/suffix: fixed, or uniform in [1, frames - 1]."""
  if k is None:
    k = int(rng.integers(1, max(frames, 2)))
  if not 0 <= k <= frames:
    raise ValueError(f"{k} given frames do not fit {frames} latent frames")
  return k


def none(rng, frames: int) -> np.ndarray:
  return np.zeros(frames, bool)


def first(rng, frames: int) -> np.ndarray:  # animate an image
  return _mask(frames, [0])


def last(rng, frames: int) -> np.ndarray:
  return _mask(frames, [frames - 1])


def prefix(rng, frames: int, k: int | None = None) -> np.ndarray:  # extend forward
  return _mask(frames, slice(0, _k(rng, frames, k)))


def suffix(rng, frames: int, k: int | None = None) -> np.ndarray:  # extend backward
  k = _k(rng, frames, k)
  return _mask(frames, slice(frames - k, frames))


def first_last(rng, frames: int) -> np.ndarray:  # interpolate two images
  return _mask(frames, [0, frames - 1])


def ends(rng, frames: int, k: tuple[int, int] | None = None) -> np.ndarray:  # connect, loop, fill
  """A prefix and a suffix with at least one frame between them."""
  if k is None:
    a = int(rng.integers(1, max(frames - 1, 2)))
    b = int(rng.integers(1, max(frames - a, 2)))
    k = (a, min(b, max(frames - a - 1, 0)))
  a, b = k
  if a + b >= frames:
    raise ValueError(f"ends ({a}, {b}) leave no frame to make out of {frames}")
  return _mask(frames, slice(0, a)) | _mask(frames, slice(frames - b, frames))


def scattered(rng, frames: int) -> np.ndarray:  # fill arbitrary gaps
  """Each frame given with probability 1/2, at least one missing."""
  m = rng.random(frames) < 0.5
  if m.all():
    m[rng.integers(frames)] = False
  return m


MODES: dict[str, Mode] = {"none": none, "first": first, "last": last, "prefix": prefix,
                          "suffix": suffix, "first_last": first_last, "ends": ends,
                          "scattered": scattered}


def check_rates(rates: Mapping[str, float]) -> dict[str, float]:
  """Mixing rates per mode -> normalized {mode: p}; unknown modes and bad rates are errors."""
  bad = sorted(set(rates) - set(MODES))
  if bad:
    raise ValueError(f"unknown conditioning modes {bad}; choose from {list(MODES)}")
  if any(r < 0 for r in rates.values()):
    raise ValueError(f"conditioning rates must be >= 0, got {dict(rates)}")
  total = float(sum(rates.values()))
  if total <= 0:
    raise ValueError("conditioning rates sum to 0")
  return {m: float(r) / total for m, r in rates.items() if r > 0}


def is_active(rates: Mapping[str, float]) -> bool:
  """Whether training mixes in any mode that gives frames."""
  return any(r > 0 for m, r in rates.items() if m != "none")


def sample_masks(rng: np.random.Generator, batch: int, frames: int,
                 rates: Mapping[str, float]) -> np.ndarray:
  """One mode per example, drawn by `rates` -> bool [batch, frames] of given latent frames."""
  p = check_rates(rates)
  names = list(p)
  picks = rng.choice(len(names), size=batch, p=[p[n] for n in names])
  return np.stack([MODES[names[i]](rng, frames) for i in picks])


def mode_table(rates: Mapping[str, float], frames: int, samples: int = 512,
               seed: int = 0) -> np.ndarray:
  """A fixed table of masks [samples, frames] drawn once from `rates`: the jitted train step
  picks rows of it with its own PRNG key (no host randomness inside jit)."""
  return sample_masks(np.random.default_rng(seed), samples, frames, rates)


def token_mask(frame_mask: jax.Array, grid: Sequence[int], patch: Sequence[int]) -> jax.Array:
  """Given latent frames [B, t] -> given tokens [B, N] on the patch grid (gt, gh, gw), in
  patchify's token order (t slowest). A token is given only if all its latent frames are."""
  gt, gh, gw = grid
  pt = patch[0]
  fm = frame_mask.reshape(frame_mask.shape[0], gt, pt).all(axis=-1)  # [B, gt]
  return jnp.repeat(fm, gh * gw, axis=1)


def per_token_time(t: jax.Array, given: jax.Array) -> jax.Array:
  """t [B] and given tokens [B, N] -> t [B, N], 0 on given tokens."""
  return jnp.where(given, 0.0, t[:, None])


def near_given(given: jax.Array, grid: Sequence[int], frames: int) -> jax.Array:
  """Given tokens [B, N] -> bool [B, N]: tokens of the `frames` token frames on either side of a
  given one (the given ones too); all False where nothing is given."""
  gt, gh, gw = grid
  fm = given.reshape(given.shape[0], gt, gh * gw).any(axis=-1)  # [B, gt]
  idx = jnp.arange(gt)
  dist = jnp.abs(idx[:, None] - idx[None, :])  # [gt, gt]
  near = (fm[:, None, :] & (dist[None] <= frames)).any(axis=-1)  # [B, gt]
  return jnp.repeat(near, gh * gw, axis=1)


def hold(x: jax.Array, known: jax.Array, given: jax.Array) -> jax.Array:
  """Tokens x [B, N, P] with the given ones replaced by their known values."""
  return jnp.where(given[..., None], known, x)


# ----------------------------------------------------------------------------------------------
# Pixel frames <-> latent frames
# ----------------------------------------------------------------------------------------------


def frame_groups(codec, frames: int) -> list[list[int]]:
  """The pixel frames behind each latent frame of a `frames`-frame clip: causal codecs keep frame
  0 alone and fold the rest in groups of r; others fold groups of r from frame 0."""
  r, fh, fw = codec.factors
  t = codec.latent_shape(frames, fh, fw)[0]
  if t * r == frames and not (r > 1 and getattr(codec, "causal", False)):
    return [list(range(k * r, (k + 1) * r)) for k in range(t)]
  if (t - 1) * r + 1 == frames:
    return [[0]] + [list(range(1 + (k - 1) * r, 1 + k * r)) for k in range(1, t)]
  raise ValueError(f"cannot map {frames} frames onto {t} latent frames of factor {r}")


def latent_given(codec, pixel_known: Sequence[bool]) -> np.ndarray:
  """Pixel frames known [T] -> latent frames given [t]: those whose pixel frames are all known."""
  known = np.asarray(pixel_known, bool)
  return np.array([known[g].all() for g in frame_groups(codec, len(known))], bool)
