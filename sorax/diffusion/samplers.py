"""ODE samplers for rectified flow, step schedules and classifier-free guidance.

A velocity function is `v(x, t) -> dx/dt` with x [B, ...] and t [B]. Samplers integrate from
t = 1 (noise) to t = 0 (data) over a decreasing schedule.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from sorax.diffusion.flow import shift_time

VelocityFn = Callable[[jax.Array, jax.Array], jax.Array]


def schedule(steps: int, shift: float = 1.0) -> jax.Array:
  """steps + 1 times from 1 to 0, uniform then warped by `shift` (same warp as training)."""
  if steps < 1:
    raise ValueError(f"sampling needs at least 1 step, got {steps}")
  return shift_time(jnp.linspace(1.0, 0.0, steps + 1), shift)


def _t(x: jax.Array, t: jax.Array) -> jax.Array:
  return jnp.full((x.shape[0],), t, jnp.float32)


def euler(v: VelocityFn, x: jax.Array, ts: jax.Array) -> jax.Array:
  """First order: x <- x + (t_next - t) v(x, t)."""
  def step(x, pair):
    t, t_next = pair
    return x + (t_next - t) * v(x, _t(x, t)), None
  x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:]))
  return x


def heun(v: VelocityFn, x: jax.Array, ts: jax.Array) -> jax.Array:
  """Second order (trapezoid) predictor-corrector; the last step to t = 0 is plain Euler,
  as in EDM, because the corrector would evaluate the model at exactly t = 0."""
  def step(x, pair):
    t, t_next = pair
    d = v(x, _t(x, t))
    x_euler = x + (t_next - t) * d
    d_next = v(x_euler, _t(x, t_next))
    x_heun = x + (t_next - t) * 0.5 * (d + d_next)
    return jnp.where(t_next > 0, x_heun, x_euler), None
  x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:]))
  return x


RENOISE_ETA = 0.5  # renoise's default share of fresh noise (configs: sample.eta)


def renoise(v: VelocityFn, x: jax.Array, ts: jax.Array, key: jax.Array,
            eta: float = RENOISE_ETA) -> jax.Array:
  """Stochastic first-order sampler: DDIM with eta (Song et al. 2021) in rectified-flow form,
  x_t = (1 - t) x0 + t eps. From the model's velocity at (x, t) read its clean estimate
  x0 = x - t v and noise estimate eps = x + (1 - t) v, then step to
  x' = (1 - t') x0 + sqrt(t'^2 - c^2) eps + c z, z ~ N(0, 1), with c = eta times the DDPM
  posterior std, t' sqrt(1 - r^2), r = (1 - t) t' / ((1 - t') t). eta = 0 is exactly `euler`,
  eta = 1 is DDPM's ancestral sampler; every eta keeps the marginals with an exact model, and
  eta > 0 replaces part of the noise at every step, so an early error of the trajectory is not
  carried to the end (the SDE samplers of SiT)."""
  if not 0.0 <= eta <= 1.0:
    raise ValueError(f"eta={eta} must be in [0, 1]")

  def step(x, inp):
    t, t_next, k = inp
    d = v(x, _t(x, t))
    x0, eps = x - t * d, x + (1.0 - t) * d
    r = (1.0 - t) * t_next / jnp.maximum((1.0 - t_next) * t, 1e-12)
    c = eta * t_next * jnp.sqrt(jnp.clip(1.0 - r ** 2, 0.0, 1.0))
    z = jax.random.normal(k, x.shape, x.dtype)
    x_next = (1.0 - t_next) * x0 + jnp.sqrt(jnp.maximum(t_next ** 2 - c ** 2, 0.0)) * eps + c * z
    return jnp.where(t_next > 0, x_next, x0), None

  keys = jax.random.split(key, ts.shape[0] - 1)
  x, _ = jax.lax.scan(step, x, (ts[:-1], ts[1:], keys))
  return x


SAMPLERS = {"euler": euler, "heun": heun, "renoise": renoise}
STOCHASTIC = frozenset({"renoise"})


def get_sampler(name: str):
  if name not in SAMPLERS:
    raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
  return SAMPLERS[name]


def guided(v_cond_uncond: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
           scale: float, interval: tuple[float, float] = (0.0, 1.0)) -> VelocityFn:
  """Classifier-free guidance: v = v_u + scale (v_c - v_u). `v_cond_uncond` returns both
  velocities from one batched call (conditional and null prompts concatenated).

  `interval` (lo, hi): guidance only where lo <= t <= hi, the plain conditional velocity
  elsewhere (Kynkaanniemi et al. 2024: guidance at the highest noise levels pulls every sample
  to one mode and at the lowest it only sharpens; in between is where it helps)."""
  lo, hi = interval
  if not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"guidance interval {interval} must satisfy 0 <= lo <= hi <= 1")

  def v(x, t):
    vc, vu = v_cond_uncond(x, t)
    on = ((t >= lo) & (t <= hi)).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(on, vu + scale * (vc - vu), vc)
  return v
