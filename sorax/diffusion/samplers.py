"""ODE samplers for rectified flow, step schedules and classifier-free guidance.

A velocity function is `v(x, t) -> dx/dt` with x [B, ...] and t [B]. Samplers integrate from
t = 1 (noise) to t = 0 (data) over a decreasing schedule.

Stateful velocity functions (self-conditioning: the model sees its own previous clean estimate)
are `v(x, t, state) -> (dx/dt, new state)`; pass the first state as `state=` and every sampler
threads it from each model call to the next.
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


def _stateful(v, state):
  """(v(x, t, s) -> (dx/dt, s'), first state): a stateless v gets a dummy state."""
  if state is None:
    return (lambda x, t, s: (v(x, t), s)), jnp.zeros(())
  return v, state


def euler(v: VelocityFn, x: jax.Array, ts: jax.Array, *, state=None) -> jax.Array:
  """First order: x <- x + (t_next - t) v(x, t)."""
  vs, s0 = _stateful(v, state)

  def step(carry, pair):
    x, s = carry
    t, t_next = pair
    d, s = vs(x, _t(x, t), s)
    return (x + (t_next - t) * d, s), None
  (x, _), _ = jax.lax.scan(step, (x, s0), (ts[:-1], ts[1:]))
  return x


def heun(v: VelocityFn, x: jax.Array, ts: jax.Array, *, state=None) -> jax.Array:
  """Second order (trapezoid) predictor-corrector; the last step to t = 0 is plain Euler,
  as in EDM, because the corrector would evaluate the model at exactly t = 0."""
  vs, s0 = _stateful(v, state)

  def step(carry, pair):
    x, s = carry
    t, t_next = pair
    d, s1 = vs(x, _t(x, t), s)
    x_euler = x + (t_next - t) * d
    d_next, s2 = vs(x_euler, _t(x, t_next), s1)
    x_heun = x + (t_next - t) * 0.5 * (d + d_next)
    last = t_next <= 0  # no corrector: keep the predictor's state too
    s_out = jax.tree.map(lambda a, b: jnp.where(last, a, b), s1, s2)
    return (jnp.where(last, x_euler, x_heun), s_out), None
  (x, _), _ = jax.lax.scan(step, (x, s0), (ts[:-1], ts[1:]))
  return x


RENOISE_ETA = 0.5  # renoise's default share of fresh noise (configs: sample.eta)


def renoise(v: VelocityFn, x: jax.Array, ts: jax.Array, key: jax.Array,
            eta: float = RENOISE_ETA, *, state=None,
            late: tuple[float, float] | None = None,
            scale: jax.Array | None = None) -> jax.Array:
  """Stochastic first-order sampler: DDIM with eta (Song et al. 2021) in rectified-flow form,
  x_t = (1 - t) x0 + t eps. From the model's velocity at (x, t) read its clean estimate
  x0 = x - t v and noise estimate eps = x + (1 - t) v, then step to
  x' = (1 - t') x0 + sqrt(t'^2 - c^2) eps + c z, z ~ N(0, 1), with c = eta times the DDPM
  posterior std, t' sqrt(1 - r^2), r = (1 - t) t' / ((1 - t') t), capped at t'. eta = 0 is
  exactly `euler`, eta = 1 is DDPM's ancestral sampler; every eta in [0, 1] keeps the
  marginals with an exact model, and eta > 0 replaces part of the noise at every step, so an
  early error of the trajectory is not carried to the end (the SDE samplers of SiT). eta > 1
  replaces more than DDPM, up to all of it (c = t': the clean estimate noised afresh, as in
  multistep consistency sampling); since the clean estimate is a posterior mean, that narrows
  the samples towards the modes (tests/test_flow.py measures it on a Gaussian).

  `late` (t_switch, eta_late): steps that start below t_switch use eta_late instead (e.g. much
  fresh noise while the layout is decided, less while the colours settle). `scale` (broadcast
  to x, in [0, 1]) multiplies eta per element: 0 samples those elements without fresh noise
  (the verbs use it next to given frames).

  `key` is one PRNG key for the whole batch, or one key per row ([B, 2] raw keys): then row b's
  fresh noise depends on its own key alone, so a sample does not change with the rows drawn
  beside it (what lets best-of-K draw more candidates for some prompts only)."""
  if not eta >= 0.0:
    raise ValueError(f"eta={eta} must be >= 0")
  etas = jnp.full((ts.shape[0] - 1,), eta, jnp.float32)
  if late is not None:
    t_switch, eta_late = late
    if not (eta_late >= 0.0 and t_switch >= 0.0):
      raise ValueError(f"late={late} must be (t_switch >= 0, eta_late >= 0)")
    etas = jnp.where(ts[:-1] < t_switch, jnp.float32(eta_late), etas)

  vs, s0 = _stateful(v, state)

  def step(carry, inp):
    x, s = carry
    t, t_next, k, eta_t = inp
    d, s = vs(x, _t(x, t), s)
    x0, eps = x - t * d, x + (1.0 - t) * d
    r = (1.0 - t) * t_next / jnp.maximum((1.0 - t_next) * t, 1e-12)
    e = eta_t if scale is None else eta_t * scale
    c = t_next * jnp.minimum(e * jnp.sqrt(jnp.clip(1.0 - r ** 2, 0.0, 1.0)), 1.0)
    z = (jax.random.normal(k, x.shape, x.dtype) if not per_row
         else jax.vmap(lambda kb: jax.random.normal(kb, x.shape[1:], x.dtype))(k))
    x_next = (1.0 - t_next) * x0 + jnp.sqrt(jnp.maximum(t_next ** 2 - c ** 2, 0.0)) * eps + c * z
    return (jnp.where(t_next > 0, x_next, x0), s), None

  per_row = key.ndim == 2
  if per_row and key.shape[0] != x.shape[0]:
    raise ValueError(f"{key.shape[0]} row keys for a batch of {x.shape[0]}")
  keys = (jnp.swapaxes(jax.vmap(lambda kb: jax.random.split(kb, ts.shape[0] - 1))(key), 0, 1)
          if per_row else jax.random.split(key, ts.shape[0] - 1))  # [S, (B,) 2]
  (x, _), _ = jax.lax.scan(step, (x, s0), (ts[:-1], ts[1:], keys, etas))
  return x


SAMPLERS = {"euler": euler, "heun": heun, "renoise": renoise}
STOCHASTIC = frozenset({"renoise"})


def get_sampler(name: str):
  if name not in SAMPLERS:
    raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
  return SAMPLERS[name]


def guided(v_cond_uncond: Callable[..., tuple[jax.Array, jax.Array]],
           scale: float, interval: tuple[float, float] = (0.0, 1.0), *,
           stateful: bool = False) -> VelocityFn:
  """Classifier-free guidance: v = v_u + scale (v_c - v_u). `v_cond_uncond` returns both
  velocities from one batched call (conditional and null prompts concatenated).

  `interval` (lo, hi): guidance only where lo <= t <= hi, the plain conditional velocity
  elsewhere (Kynkaanniemi et al. 2024: guidance at the highest noise levels pulls every sample
  to one mode and at the lowest it only sharpens; in between is where it helps).

  `stateful`: `v_cond_uncond(x, t, x0_prev)` takes the previous clean estimate, and the guided
  function is `v(x, t, x0_prev) -> (velocity, x - t * velocity)`: self-conditioning on the
  guided estimate (both branches see the same one)."""
  lo, hi = interval
  if not 0.0 <= lo <= hi <= 1.0:
    raise ValueError(f"guidance interval {interval} must satisfy 0 <= lo <= hi <= 1")

  def mix(x, t, vc, vu):
    on = ((t >= lo) & (t <= hi)).reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.where(on, vu + scale * (vc - vu), vc)

  if not stateful:
    return lambda x, t: mix(x, t, *v_cond_uncond(x, t))

  def v(x, t, prev):
    out = mix(x, t, *v_cond_uncond(x, t, prev))
    return out, x - t.reshape((-1,) + (1,) * (x.ndim - 1)) * out
  return v
