"""Composable guidance probe (Liu et al. 2022, "Compositional Visual Generation with Composable
Diffusion Models"): on multi-object prompts, add each object's own guidance direction to the
caption's CFG,

    v = v_u + s (v_c - v_u) + w * sum_i d_i

so no object of a crowded caption is left without a pull of its own. --mode alone: d_i =
v_i - v_u, v_i the velocity under object i's caption alone (the same background and wall);
--mode without: d_i = v_c - v_{c without i}, what object i adds with the others kept. One JSON
line per w on the speedrun's held-out prompts (w = 0 is the plain sampler, the baseline).

    python benchmarks/compose_probe.py --prompts 256 --multi-only --steps 48 --w 0 0.5 --mode without
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sampler_sweep import breakdown  # noqa: E402
from speedrun import heldout_prompts  # noqa: E402

from sorax import patchify as P  # noqa: E402
from sorax.data import captions, oracle  # noqa: E402
from sorax.diffusion import flow, samplers  # noqa: E402
from sorax.evaluate import json_safe  # noqa: E402
from sorax.models.text import null_text  # noqa: E402
from sorax.sample import Pipeline, decode_to_pixels  # noqa: E402

MAX_OBJ = 3


def object_captions(prompt: str, mode: str) -> list[str]:
  """A terse caption -> per object, the terse caption of that object alone (mode "alone") or of
  the scene without it (mode "without"), the same background and wall."""
  spec = captions.parse_terse(prompt)
  objs = spec.objects
  keep = ([(o,) for o in objs] if mode == "alone"
          else [objs[:i] + objs[i + 1:] for i in range(len(objs))])
  return [captions.caption(dataclasses.replace(spec, objects=k), "terse", None) for k in keep]


def make_fn(pipe, latent_shape, steps, cfg_scale, eta, w, mode):
  patch = tuple(pipe.cfg.model.patch)
  grid = P.grid_shape(latent_shape, patch)
  pos = P.positions(grid)
  n_tok = int(np.prod(grid))
  shift = flow.resolution_shift(n_tok, pipe.cfg.diffusion.base_tokens,
                                pipe.cfg.diffusion.base_shift)
  ts = jnp.asarray(np.asarray(samplers.schedule(steps, shift)))
  null_tokens = tuple(pipe.tokenizer.null_tokens)
  prediction = pipe.cfg.diffusion.prediction
  k = 2 + MAX_OBJ  # conditional, null, then each object's caption
  graphdef = pipe.graphdef

  @jax.jit
  def run(params, noise, ids, mask, sub_ids, sub_mask, sub_on, key):
    """ids/mask [B, L]; sub_ids/sub_mask [B, MAX_OBJ, L]; sub_on [B, MAX_OBJ] float."""
    model = nnx.merge(graphdef, params)
    b = noise.shape[0]
    null_ids, null_mask = null_text(ids, null_tokens)
    all_ids = jnp.concatenate([ids, null_ids, sub_ids.transpose(1, 0, 2).reshape(-1, ids.shape[1])])
    all_mask = jnp.concatenate([mask, null_mask,
                                sub_mask.transpose(1, 0, 2).reshape(-1, ids.shape[1])])
    text = model.encode_text(all_ids, all_mask)
    positions = jnp.broadcast_to(pos, (k * b,) + pos.shape)

    def v(x, t):
      xk, tk = jnp.concatenate([x] * k), jnp.concatenate([t] * k)
      out = model.dit(xk, positions, tk, text, all_mask)
      vel = flow.to_velocity(out, xk, tk, prediction).reshape((k, b) + x.shape[1:])
      vc, vu, vs = vel[0], vel[1], vel[2:]
      # alone: each object's caption against the null; without: the full caption against the
      # caption that lacks the object (what object i adds, the others kept).
      diff = vs - vu[None] if mode == "alone" else vc[None] - vs
      extra = jnp.einsum("jb...,bj->b...", diff, sub_on)
      return vu + cfg_scale * (vc - vu) + w * extra

    return samplers.renoise(v, noise, ts, key, eta)

  return run, n_tok, P.token_dim(latent_shape[-1], patch)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--prompts", type=int, default=256)
  ap.add_argument("--skip", type=int, default=0)
  ap.add_argument("--multi-only", action="store_true", help="only prompts of 2-3 objects")
  ap.add_argument("--steps", type=int, default=48)
  ap.add_argument("--cfg", type=float, default=2.5)
  ap.add_argument("--eta", type=float, default=2.0)
  ap.add_argument("--w", type=float, nargs="+", default=[0.0, 1.0])
  ap.add_argument("--mode", choices=("alone", "without"), default="without")
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--log", default="runs/compose_probe.jsonl")
  args = ap.parse_args()
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None
  d = pipe.cfg.data
  prompts, specs = heldout_prompts(args.prompts, d.height, d.width, d.frames)
  prompts, specs = prompts[args.skip:], specs[args.skip:]
  if args.multi_only:
    keep = [i for i, s in enumerate(specs) if len(s.objects) > 1]
    prompts, specs = [prompts[i] for i in keep], [specs[i] for i in keep]
  latent_shape = pipe.latent_shape(d.frames, d.height, d.width)
  L = d.text_len
  for w in args.w:
    run, n_tok, tok_dim = make_fn(pipe, latent_shape, args.steps, args.cfg, args.eta, w, args.mode)
    t0 = time.perf_counter()
    out = []
    for start in range(0, len(prompts), args.batch):
      chunk = prompts[start:start + args.batch]
      b = len(chunk)
      ids, mask = pipe.tokenizer.encode(chunk, L)
      subs, on = [], np.zeros((b, MAX_OBJ), np.float32)
      for i, p in enumerate(chunk):
        caps = object_captions(p, args.mode)
        if len(caps) > 1:
          on[i, :len(caps)] = 1.0
        subs.append((caps + [p] * MAX_OBJ)[:MAX_OBJ])
      sid, smask = pipe.tokenizer.encode([c for row in subs for c in row], L)
      sid, smask = sid.reshape(b, MAX_OBJ, L), smask.reshape(b, MAX_OBJ, L)
      key = jax.random.PRNGKey(0)
      noise = jax.random.normal(jax.random.fold_in(key, start), (b, n_tok, tok_dim))
      tokens = run(pipe.params, noise, ids, mask, sid, smask, on,
                   jax.random.fold_in(jax.random.fold_in(key, start), 1))
      latent = P.unpatchify_batch(tokens, latent_shape, tuple(pipe.cfg.model.patch))
      out.append(decode_to_pixels(pipe.codec, latent, d.frames))
    videos = np.concatenate(out)
    rates = json_safe(oracle.score_videos(list(videos), specs))
    groups = breakdown(videos, specs)
    line = {"benchmark": "compose_probe", "w": w, "mode": args.mode, "steps": args.steps, "cfg": args.cfg,
            "eta": args.eta, "n": len(prompts), "prompts": args.prompts, "skip": args.skip,
            "multi_only": args.multi_only, "sample_s": round(time.perf_counter() - t0, 1),
            **{k_: (None if v_ is None else round(v_, 4)) for k_, v_ in rates.items()},
            "by_objects": {k_.split("=")[1]: g["all_right"] for k_, g in groups.items()
                           if k_.startswith("objects=")}}
    print(json.dumps(line), flush=True)
    log = pathlib.Path(args.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
      f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
  main()
