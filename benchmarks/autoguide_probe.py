"""Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself")
on top of classifier-free guidance, probed on the held-out prompts with the oracle.

The guided velocity is v = v_u + s (v_c - v_u) + a (v_c - w_c): CFG with scale s as shipped,
plus `a` times the difference between the good model's conditional velocity v_c and a weaker
model's w_c (an earlier, smaller checkpoint of the same family: same tokenizer and canvas).
a = 0 is plain CFG (the same samples as `Pipeline.generate`'s renoise, the same keys).

    python benchmarks/autoguide_probe.py --weak runs/old/v12.safetensors --prompts 256 \\
        --autoguide 0 0.5 1 [--steps 96 --cfg 2.5 --eta 2]

One JSON line per weight, also appended to --log.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from speedrun import heldout_prompts  # noqa: E402  (a sibling benchmark, not a package)

from sorax import patchify as P  # noqa: E402
from sorax.data import oracle  # noqa: E402
from sorax.diffusion import flow, samplers  # noqa: E402
from sorax.evaluate import json_safe  # noqa: E402
from sorax.models.text import null_text  # noqa: E402
from sorax.sample import Pipeline, decode_to_pixels  # noqa: E402


def make_sampler(good: Pipeline, weak: Pipeline, latent_shape, steps, cfg_scale, eta, auto):
  c = good.cfg
  patch = tuple(c.model.patch)
  grid = P.grid_shape(latent_shape, patch)
  pos = P.positions(grid)
  shift = flow.resolution_shift(int(np.prod(grid)), c.diffusion.base_tokens,
                                c.diffusion.base_shift)
  ts = samplers.schedule(steps, shift)
  pred_g, pred_w = c.diffusion.prediction, weak.cfg.diffusion.prediction
  null_tokens = tuple(good.tokenizer.null_tokens)

  @jax.jit
  def run(gparams, wparams, noise, ids, mask, key):
    g = nnx.merge(good.graphdef, gparams)
    w = nnx.merge(weak.graphdef, wparams)
    b = noise.shape[0]
    null_ids, null_mask = null_text(ids, null_tokens)
    gtext = g.encode_text(jnp.concatenate([ids, null_ids]), jnp.concatenate([mask, null_mask]))
    gmask = jnp.concatenate([mask, null_mask])
    wtext = w.encode_text(ids, mask)
    pos2 = jnp.broadcast_to(pos, (2 * b,) + pos.shape)
    pos1 = jnp.broadcast_to(pos, (b,) + pos.shape)

    def v(x, t):
      x2, t2 = jnp.concatenate([x, x]), jnp.concatenate([t, t])
      out = flow.to_velocity(g.dit(x2, pos2, t2, gtext, gmask), x2, t2, pred_g)
      vc, vu = out[:b], out[b:]
      guided = vu + cfg_scale * (vc - vu)
      if auto:
        wc = flow.to_velocity(w.dit(x, pos1, t, wtext, mask), x, t, pred_w)
        guided = guided + auto * (vc - wc)
      return guided

    tokens = samplers.renoise(v, noise, ts, key, eta)
    return P.unpatchify_batch(tokens, latent_shape, patch)

  return run


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--checkpoint", default=None, help="the good model (default: shipped)")
  ap.add_argument("--weak", required=True, help="the weak model's weights file")
  ap.add_argument("--prompts", type=int, default=256)
  ap.add_argument("--skip", type=int, default=0)
  ap.add_argument("--autoguide", type=float, nargs="+", default=[0.0, 1.0])
  ap.add_argument("--steps", type=int, default=96)
  ap.add_argument("--cfg", type=float, default=2.5)
  ap.add_argument("--eta", type=float, default=2.0)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--log", default="runs/autoguide_probe.jsonl")
  args = ap.parse_args()
  good, weak = Pipeline.load(args.checkpoint), Pipeline.load(args.weak)
  if good.tokenizer.vocab_size != weak.tokenizer.vocab_size:
    raise SystemExit(f"{args.weak}: another tokenizer than the good model's")
  d = good.cfg.data
  prompts, specs = heldout_prompts(args.prompts, d.height, d.width, d.frames)
  prompts, specs = prompts[args.skip:], specs[args.skip:]
  latent_shape = good.latent_shape(d.frames, d.height, d.width)
  if weak.latent_shape(d.frames, d.height, d.width) != latent_shape:
    raise SystemExit(f"{args.weak}: another latent than the good model's")
  tok_dim = P.token_dim(latent_shape[-1], tuple(good.cfg.model.patch))
  n_tok = int(np.prod(P.grid_shape(latent_shape, tuple(good.cfg.model.patch))))
  for a in args.autoguide:
    fn = make_sampler(good, weak, latent_shape, args.steps, args.cfg, args.eta, a)
    t0, videos = time.perf_counter(), []
    for start in range(0, len(prompts), 32):  # Pipeline.generate's keys at batch_size 32
      chunk = prompts[start:start + 32]
      ids, mask = good.tokenizer.encode(chunk, d.text_len)
      key = jax.random.PRNGKey(args.seed)
      noise = jax.random.normal(jax.random.fold_in(key, start), (len(chunk), n_tok, tok_dim))
      lat = fn(good.params, weak.params, noise, ids, mask,
               jax.random.fold_in(jax.random.fold_in(key, start), 1))
      videos.append(decode_to_pixels(good.codec, lat, d.frames))
    videos = np.concatenate(videos)
    rates = json_safe(oracle.score_videos(list(videos), specs))
    row = dict(benchmark="autoguide_probe", weak=args.weak, autoguide=a, cfg=args.cfg,
               steps=args.steps, eta=args.eta, prompts=len(prompts), skip=args.skip,
               sample_s=round(time.perf_counter() - t0, 1), **rates)
    print(json.dumps(row), flush=True)
    with open(args.log, "a", encoding="utf-8") as fh:
      fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
  main()
