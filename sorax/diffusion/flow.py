"""Rectified flow (flow matching) on latent tokens.

Convention (as in SD3 / Wan): t = 0 is data, t = 1 is noise,
  x_t = (1 - t) * x0 + t * noise,   target velocity v = dx_t/dt = noise - x0.
Sampling integrates dx/dt = v from t = 1 down to t = 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def shift_time(t: jax.Array, shift: float | jax.Array) -> jax.Array:
  """Warps t in [0, 1] towards noise for shift > 1: t' = s t / (1 + (s - 1) t).

  Larger videos have more redundant tokens, so the same noise level destroys less signal;
  spending more time near t = 1 compensates (SD3, section 5.3.2).
  """
  return shift * t / (1.0 + (shift - 1.0) * t)


def resolution_shift(num_tokens: int, base_tokens: int, base_shift: float = 1.0) -> float:
  """Shift that grows with sqrt(tokens / base_tokens) (SD3's sqrt(m/n) rule)."""
  return float(base_shift * (num_tokens / base_tokens) ** 0.5)


def sample_timesteps(rng: jax.Array, batch: int, *, mean: float = 0.0, std: float = 1.0,
                     shift: float = 1.0) -> jax.Array:
  """Logit-normal t ~ sigmoid(N(mean, std)), then resolution-shifted. -> [batch] in (0, 1)."""
  t = jax.nn.sigmoid(mean + std * jax.random.normal(rng, (batch,), jnp.float32))
  return shift_time(t, shift)


def _bcast(t: jax.Array, x: jax.Array) -> jax.Array:
  """t [B] (per example) or [B, N] (per token) shaped to broadcast against x [B, N, ...]."""
  return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """x_t for t [B] (or per token [B, N]) broadcast over the trailing axes of x0 [B, N, ...]."""
  tb = _bcast(t, x0)
  return (1.0 - tb) * x0 + tb * noise


def velocity_target(x0: jax.Array, noise: jax.Array) -> jax.Array:
  return noise - x0


PREDICTIONS = ("velocity", "x0")


def to_velocity(out: jax.Array, x_t: jax.Array, t: jax.Array, prediction: str,
                t_min: float = 0.05) -> jax.Array:
  """Turns the network's output into a velocity.

  "velocity": the output is v. "x0": the output is the clean sample and
  v = (x_t - x0_hat) / t, with t clamped at `t_min`. x0-prediction lets a network whose width is
  below the token dimension still produce the full-rank noise part of v (it comes from x_t
  analytically, not through the network): Li & He, "Back to Basics: Let Denoising Generative
  Models Denoise" (2025). Pixel-space tokens before the VAE are such a case.
  """
  if prediction == "velocity":
    return out
  if prediction == "x0":
    tb = _bcast(jnp.maximum(t, t_min), x_t)
    return (x_t - out) / tb
  raise ValueError(f"unknown prediction {prediction!r}; choose from {PREDICTIONS}")


def flow_loss(pred: jax.Array, x0: jax.Array, noise: jax.Array,
              mask: jax.Array | None = None, weight: jax.Array | None = None) -> jax.Array:
  """Mean squared velocity error. pred/x0/noise [B, N, P]; mask [B, N] of the tokens counted
  (bool, or float token weights: a weighted mean over tokens); weight [B, N, P] (positive) makes
  the mean over features a weighted one."""
  sq = jnp.square(pred.astype(jnp.float32) - velocity_target(x0, noise))
  if weight is None:
    err = jnp.mean(sq, axis=-1)
  else:
    err = jnp.sum(sq * weight, axis=-1) / jnp.maximum(jnp.sum(weight, axis=-1), 1e-6)
  if mask is None:
    return jnp.mean(err)
  w = mask.astype(jnp.float32)
  return jnp.sum(err * w) / jnp.maximum(jnp.sum(w), 1.0)
