"""The jitted sampling program `Pipeline.generate` runs (sorax/sample.py): the text encoded once,
classifier-free guidance (and guidance toward given frames) around one batched DiT call, the
sampler's loop, given tokens held. One compiled function per (model, latent shape, settings).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sorax import patchify as P
from sorax.diffusion import conditioning as cond
from sorax.diffusion import flow, samplers
from sorax.models.dit import palette_x0
from sorax.models.text import null_text


@functools.lru_cache(maxsize=16)
def sampling_fn(graphdef, latent_shape, patch, steps, cfg_scale, sampler, shift, prediction,
                 conditioned=False, strength=1.0, null_tokens=(2,), eta=samplers.RENOISE_ETA,
                 interval=(0.0, 1.0), guide="velocity", eta_late=None, quiet=0,
                 guide_context=0.0):
  grid = P.grid_shape(latent_shape, patch)
  pos = P.positions(grid)
  ts = np.asarray(samplers.schedule(steps, shift))
  if strength < 1.0:  # SDEdit: the part of the schedule below `strength`
    ts = np.concatenate([[strength], ts[ts < strength]]).astype(np.float32)
  ts = jnp.asarray(ts)
  integrate = samplers.get_sampler(sampler)

  @jax.jit
  def run(params, noise, ids, mask, known, given, key):
    """noise/known [B, N, P]; given bool [B, N] tokens held at `known`; key: the stochastic
    sampler's noise (unused by the ODE samplers)."""
    model = nnx.merge(graphdef, params)
    b = noise.shape[0]
    null_ids, null_mask = null_text(ids, null_tokens)
    text = model.encode_text(jnp.concatenate([ids, null_ids]), jnp.concatenate([mask, null_mask]))
    tmask = jnp.concatenate([mask, null_mask])
    positions = jnp.broadcast_to(pos, (2 * b,) + pos.shape)
    given2 = jnp.concatenate([given, given])
    # Context guidance (guide_context > 0): at the text's scale the null branch drops the given
    # frames ("joint", one batched call of 2B as without it); at another scale a third branch.
    joint = bool(guide_context) and guide_context == cfg_scale
    if guide_context and not joint:
      positions3 = jnp.broadcast_to(pos, (3 * b,) + pos.shape)
      text3, tmask3 = jnp.concatenate([text, text[b:]]), jnp.concatenate([tmask, tmask[b:]])

    self_cond = model.dit.cfg.self_cond

    def both(x, t, prev=None):  # one batched call for the conditional and the null prompt
      x2, t2 = jnp.concatenate([x, x]), jnp.concatenate([t, t])
      prev2 = None if prev is None else jnp.concatenate([prev, prev])
      t_tok = t2
      if conditioned and joint:
        # The null branch drops the given frames too: they enter noised to t (with the sample's
        # own starting noise) like every other token, so guidance pulls toward the given frames
        # as well as toward the text.
        x2 = jnp.concatenate([cond.hold(x, known, given), dropped(x, t)])
        t_tok = jnp.concatenate([cond.per_token_time(t, given),
                                 jnp.broadcast_to(t[:, None], given.shape)])
      elif conditioned:  # given tokens: their known values, t = 0, and no velocity
        x2 = cond.hold(x2, jnp.concatenate([known, known]), given2)
        t_tok = cond.per_token_time(t2, given2)
      out, logits = model.dit(x2, positions, t_tok, text, tmask, x0_prev=prev2,
                              return_logits=True)
      if guide == "logits":
        # Guide each pixel's colour distribution (l_u + s (l_c - l_u)) and return the guided
        # estimate for both halves, so `samplers.guided`'s mix leaves it as it is.
        on = ((t >= interval[0]) & (t <= interval[1]))[:, None, None, None]
        lc, lu = logits[:b], logits[b:]
        x0 = palette_x0(lu + jnp.where(on, cfg_scale, 1.0) * (lc - lu), model.dit.cfg.palette)
        out = jnp.concatenate([x0, x0])
      v = flow.to_velocity(out, x2, t_tok, prediction)
      if conditioned:
        v = jnp.where(given2[..., None], 0.0, v)
      return v[:b], v[b:]

    def dropped(x, t):  # tokens with the given ones noised to t instead of held clean
      return cond.hold(x, flow.interpolate(known, noise, t), given)

    def three(x, t, prev=None):
      """Text and context guided apart (InstructPix2Pix's two scales): with A = v(null, no
      context), B = v(null, context), C = v(text, context), v = A + s_x (B - A) + s_t (C - B).
      Returned as both halves, so `samplers.guided`'s mix leaves it as it is."""
      held, t_held = cond.hold(x, known, given), cond.per_token_time(t, given)
      x3 = jnp.concatenate([held, held, dropped(x, t)])
      t_tok = jnp.concatenate([t_held, t_held, jnp.broadcast_to(t[:, None], given.shape)])
      prev3 = None if prev is None else jnp.concatenate([prev, prev, prev])
      out = model.dit(x3, positions3, t_tok, text3, tmask3, x0_prev=prev3)
      v = jnp.where(jnp.concatenate([given] * 3)[..., None], 0.0,
                    flow.to_velocity(out, x3, t_tok, prediction))
      c, bb, a = v[:b], v[b:2 * b], v[2 * b:]
      on = ((t >= interval[0]) & (t <= interval[1]))[:, None, None]
      g = jnp.where(on, a + guide_context * (bb - a) + cfg_scale * (c - bb), c)
      return g, g

    # Self-conditioning: each call sees the last call's guided clean estimate (zeros at first).
    v = samplers.guided(three if conditioned and guide_context and not joint else both,
                        cfg_scale, interval, stateful=self_cond)
    state = jnp.zeros_like(noise) if self_cond else None
    x = noise if strength >= 1.0 else flow.interpolate(known, noise, jnp.full((b,), ts[0]))
    x = cond.hold(x, known, given) if conditioned else x
    stochastic = sampler in samplers.STOCHASTIC
    # No fresh noise next to given frames (quiet > 0): those tokens follow the ODE.
    scale = (jnp.where(cond.near_given(given, grid, quiet), 0.0, 1.0)[..., None]
             if quiet and stochastic else None)
    tokens = (integrate(v, x, ts, key, eta, state=state, late=eta_late, scale=scale)
              if stochastic
              else integrate(v, x, ts, state=state))
    # Given tokens have zero velocity, but re-noising would still move them: hold them.
    tokens = cond.hold(tokens, known, given) if conditioned else tokens
    return P.unpatchify_batch(tokens, latent_shape, patch)

  return run
