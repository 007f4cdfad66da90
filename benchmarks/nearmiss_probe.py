"""Can the model tell its prompt from near misses on its own samples? A word-reading judge.

rerank_probe.py found that the denoising error with the prompt ranks candidates mostly by how
clean they look, not by how well they fit the words (the null prompt ranks nearly as well).
This probe scores each candidate against its prompt AND against near-miss prompts: the same
caption with one object's motion (or shape) swapped for a contrasting one. A candidate that
drew what was asked should be explained better by the prompt than by any near miss
("Your diffusion model is secretly a zero-shot classifier", Li et al. 2023, with the contrast
set chosen per prompt). All prompts of a prompt's candidates see the same noise.

Reuses the candidates rerank_probe.py saved (--videos). Prints one JSON line with the all-right
of each pick rule; --out saves every error for offline study.

    python benchmarks/nearmiss_probe.py --videos runs/rerank_v14_videos.npy [--prompts 128]
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
from speedrun import heldout_prompts  # noqa: E402  (a sibling benchmark, not a package)

from sorax import patchify as P  # noqa: E402
from sorax.data import captions, oracle  # noqa: E402
from sorax.diffusion import flow, rerank  # noqa: E402
from sorax.models.codec import from_pixels  # noqa: E402
from sorax.sample import Pipeline  # noqa: E402

# The motion a near miss swaps in for each asked motion: its opposite, and one the model
# confuses it with most (BUILD_NOTES, "How motion fails").
CONTRAST = {"static": ("bouncing", "left"), "left": ("right", "static"),
            "right": ("left", "static"), "up": ("down", "falling"), "down": ("up", "static"),
            "bouncing": ("static", "left"), "falling": ("up", "bouncing"),
            "growing": ("shrinking", "static"), "shrinking": ("growing", "static")}
SIZE_OF = {"growing": "small", "shrinking": "large"}


def near_misses(spec) -> list[str]:
  """Terse captions that differ from `spec`'s in one object's motion."""
  rng = np.random.default_rng(0)
  out = []
  for i, o in enumerate(spec.objects):
    for m in CONTRAST[o.motion]:
      size = SIZE_OF.get(m, o.size)
      if o.motion in SIZE_OF and m not in SIZE_OF:
        size = o.size
      obj = dataclasses.replace(o, motion=m, size=size, start=None, dir=None)
      objs = list(spec.objects)
      objs[i] = obj
      out.append(captions.caption(dataclasses.replace(spec, objects=tuple(objs)), "terse", rng))
  return out


def errors(pipe: Pipeline, videos: np.ndarray, prompts: list[str], noise_index: np.ndarray,
           t_grid, draws: int, batch: int = 16, seed: int = 0) -> np.ndarray:
  """-> [n, len(t_grid)]: x0 error of each (video, prompt) pair, mean over draws; the noise is
  keyed by noise_index."""
  c = pipe.cfg
  patch = tuple(c.model.patch)
  graphdef, codec = pipe.graphdef, pipe.codec
  ids, mask = pipe.tokenizer.encode(list(prompts), c.data.text_len)
  ts = jnp.asarray(t_grid, jnp.float32)

  @jax.jit
  def one(params, video, ids, mask, pidx):
    model = nnx.merge(graphdef, params)
    x0, positions = P.patchify_batch(codec.encode(from_pixels(video)), patch)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(pidx)
    noise = jax.vmap(lambda k: jax.random.normal(k, (draws, len(t_grid)) + x0.shape[1:]))(keys)
    def x0_fn(x_t, t):
      v = flow.to_velocity(model(x_t, positions, t, ids, mask), x_t, t, c.diffusion.prediction)
      return x_t - t[:, None, None] * v

    noise = jnp.moveaxis(noise, 0, 2)  # [draws, n_t, B, N, P], as rerank.denoise_error takes it
    return jnp.stack([rerank.denoise_error(x0_fn, x0, noise[:, k:k + 1], ts[k:k + 1])
                      for k in range(len(t_grid))], -1)

  res = []
  n = len(videos)
  for i in range(0, n, batch):
    s = slice(i, min(i + batch, n))
    v, d, m, p = videos[s], ids[s], mask[s], noise_index[s]
    pad = batch - len(v)
    if pad:  # keep one compiled shape
      v, d, m, p = (np.concatenate([a, np.repeat(a[-1:], pad, 0)]) for a in (v, d, m, p))
    res.append(np.asarray(one(pipe.params, v, d, m, jnp.asarray(p)))[:batch - pad])
  return np.concatenate(res)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--videos", required=True, help="candidates [n, k, T, H, W, 3] (.npy)")
  ap.add_argument("--prompts", type=int, default=128)
  ap.add_argument("--draws", type=int, default=2)
  ap.add_argument("--t-grid", type=float, nargs="+", default=[0.5, 0.7, 0.9])
  ap.add_argument("--out", default=None)
  args = ap.parse_args()
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None
  d = pipe.cfg.data
  prompts, specs = heldout_prompts(args.prompts, d.height, d.width, d.frames)
  videos = np.load(args.videos)[:args.prompts]
  n, k = videos.shape[:2]
  right = np.array([[bool(oracle.score_video(videos[i, j], specs[i])["all_right"])
                     for j in range(k)] for i in range(n)])
  misses = [near_misses(s) for s in specs]
  # Pairs: (prompt i, candidate j, caption c) with c = 0 the prompt, 1.. the near misses.
  rows, texts = [], []
  for i in range(n):
    for j in range(k):
      for c, text in enumerate([prompts[i]] + misses[i]):
        rows.append((i, j, c))
        texts.append(text)
  rows = np.array(rows)
  t0 = time.perf_counter()
  err = errors(pipe, videos[rows[:, 0], rows[:, 1]], texts, rows[:, 0],
               tuple(args.t_grid), args.draws)  # [pairs, n_t]
  t_score = time.perf_counter() - t0
  nt = len(args.t_grid)
  cond = np.zeros((n, k, nt))
  margin = np.zeros((n, k, nt))  # min over near misses minus the prompt's: higher is better
  mean_margin = np.zeros((n, k, nt))
  for i in range(n):
    for j in range(k):
      sel = (rows[:, 0] == i) & (rows[:, 1] == j)
      e = err[sel]
      cond[i, j] = e[0]
      margin[i, j] = e[1:].min(0) - e[0]
      mean_margin[i, j] = e[1:].mean(0) - e[0]
  line = {"benchmark": "nearmiss_probe", "checkpoint": args.checkpoint or "shipped",
          "prompts": n, "k": k, "t_grid": args.t_grid, "draws": args.draws,
          "one_sample": round(float(right.mean()), 4),
          "oracle_best": round(float(right.any(1).mean()), 4)}
  rules = {"cond": -cond.mean(-1), "margin_min": margin.mean(-1),
           "margin_mean": mean_margin.mean(-1)}
  for ti, t in enumerate(args.t_grid):
    rules[f"margin_min_t{t}"] = margin[:, :, ti]
    rules[f"margin_mean_t{t}"] = mean_margin[:, :, ti]
  for name, s in rules.items():  # higher is better
    line[f"pick_{name}"] = round(float(right[np.arange(n), s.argmax(1)].mean()), 4)
  line["score_s"] = round(t_score, 1)
  if args.out:
    np.savez(args.out, right=right, rows=rows, err=err)
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()
