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


SAMPLERS = {"euler": euler, "heun": heun}


def get_sampler(name: str):
  if name not in SAMPLERS:
    raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
  return SAMPLERS[name]


def guided(v_cond_uncond: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
           scale: float) -> VelocityFn:
  """Classifier-free guidance: v = v_u + scale (v_c - v_u). `v_cond_uncond` returns both
  velocities from one batched call (conditional and null prompts concatenated)."""
  def v(x, t):
    vc, vu = v_cond_uncond(x, t)
    return vu + scale * (vc - vu)
  return v
