"""Can the model pick its own best sample? Best-of-K by the model's own denoising score.

For each held-out prompt (the speedrun's fixed set), K samples are drawn (seeds 0..K-1) and each
is scored twice: by the world's oracle (the measure) and by the model itself, with no oracle:
the clean-estimate error of the DiT on the sample re-noised at a few noise levels, with the
prompt (`cond`) and the prompt's information gain over the empty prompt (`gap` = cond error
minus null-prompt error: lower means the prompt explains the sample better than no prompt
does; "Your diffusion model is secretly a zero-shot classifier", Li et al. 2023). The noise is
the same for every candidate of a prompt, so the scores compare candidates, not noise draws.

Prints one JSON line: all-right of one sample (the mean over candidates), of the candidate
each score picks, and of the best candidate by the oracle (the ceiling of any reranker).

    python benchmarks/rerank_probe.py [--checkpoint F] [--prompts 128] [--k 4]
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
from sorax.diffusion import flow, rerank  # noqa: E402
from sorax.models.codec import from_pixels  # noqa: E402
from sorax.models.text import null_text  # noqa: E402
from sorax.sample import Pipeline  # noqa: E402

T_GRID = (0.3, 0.5, 0.7, 0.9)


def self_scores(pipe: Pipeline, videos: np.ndarray, prompts, prompt_index: np.ndarray,
                *, seed: int = 0, batch: int = 16, t_grid=T_GRID, draws: int = 1) -> np.ndarray:
  """-> float [n, 2, draws, len(t_grid)]: the x0 error (latent tokens) of each video re-noised
  at each t (`draws` noise draws each), with its prompt (0) and with the null prompt (1). The
  noise is keyed by `prompt_index`, so candidates of one prompt see the same noise."""
  c = pipe.cfg
  patch = tuple(c.model.patch)
  graphdef, codec = pipe.graphdef, pipe.codec
  ids, mask = pipe.tokenizer.encode(list(prompts), c.data.text_len)
  null_ids, null_mask = null_text(jnp.asarray(ids), tuple(pipe.tokenizer.null_tokens))
  null_ids, null_mask = np.asarray(null_ids), np.asarray(null_mask)
  ts = jnp.asarray(t_grid, jnp.float32)

  @jax.jit
  def one(params, video, ids, mask, nids, nmask, pidx):
    model = nnx.merge(graphdef, params)
    x0, positions = P.patchify_batch(codec.encode(from_pixels(video)), patch)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(pidx)
    noise = jax.vmap(lambda k: jax.random.normal(k, (draws, len(t_grid)) + x0.shape[1:]))(keys)
    out = []
    for tid, tm in ((ids, mask), (nids, nmask)):
      def x0_fn(x_t, t, tid=tid, tm=tm):
        v = flow.to_velocity(model(x_t, positions, t, tid, tm), x_t, t, c.diffusion.prediction)
        return x_t - t[:, None, None] * v
      # One (draw, t) cell at a time, so every cell's error is kept apart.
      out.append(jnp.stack([jnp.stack([
          rerank.denoise_error(x0_fn, x0, noise[None, None, :, r, k], ts[k:k + 1])
          for k in range(len(t_grid))], -1) for r in range(draws)], 1))
    return jnp.stack(out, 1)  # [B, 2, draws, n_t]

  res = []
  for i in range(0, len(videos), batch):
    s = slice(i, i + batch)
    res.append(np.asarray(one(pipe.params, videos[s], ids[s], mask[s], null_ids[s],
                              null_mask[s], jnp.asarray(prompt_index[s]))))
  return np.concatenate(res)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--prompts", type=int, default=128)
  ap.add_argument("--k", type=int, default=4)
  ap.add_argument("--skip", type=int, default=0, help="use held-out prompts skip..skip+prompts")
  ap.add_argument("--first-seed", type=int, default=0, help="candidates are seeds first..first+k-1")
  ap.add_argument("--cfg", type=float, default=None)
  ap.add_argument("--draws", type=int, default=1, help="noise draws per noise level")
  ap.add_argument("--t-grid", type=float, nargs="+", default=list(T_GRID))
  ap.add_argument("--out", default=None, help="also save per-candidate rows (.npz)")
  ap.add_argument("--videos", default=None, help="reuse (or save) the candidates (.npy)")
  args = ap.parse_args()
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None
  d = pipe.cfg.data
  prompts, specs = heldout_prompts(args.skip + args.prompts, d.height, d.width, d.frames)
  prompts, specs = prompts[args.skip:], specs[args.skip:]
  n, k = len(prompts), args.k
  t0 = time.perf_counter()
  if args.videos and pathlib.Path(args.videos).is_file():
    videos = np.load(args.videos)
  else:
    videos = np.stack([pipe.generate(prompts, seed=args.first_seed + s, cfg_scale=args.cfg,
                                     batch_size=32, best_of=1)
                       for s in range(k)], 1)  # [n, k, T, H, W, 3]
    if args.videos:
      np.save(args.videos, videos)
  t_sample = time.perf_counter() - t0
  right = np.array([[bool(oracle.score_video(videos[i, j], specs[i])["all_right"])
                     for j in range(k)] for i in range(n)])
  t0 = time.perf_counter()
  flat = videos.reshape((n * k,) + videos.shape[2:])
  sc = self_scores(pipe, flat, [p for p in prompts for _ in range(k)],
                   np.repeat(np.arange(n), k), t_grid=tuple(args.t_grid),
                   draws=args.draws).reshape(n, k, 2, args.draws, -1)
  raw, sc = sc, sc.mean(3)  # [n, k, 2, draws, n_t] -> the mean over draws
  t_score = time.perf_counter() - t0
  picks = {
      "cond": sc[:, :, 0].mean(-1),
      "gap": (sc[:, :, 0] - sc[:, :, 1]).mean(-1),
      "gap_hi": (sc[:, :, 0, -2:] - sc[:, :, 1, -2:]).mean(-1),  # the two noisiest: the layout
      "ratio": (sc[:, :, 0] / sc[:, :, 1]).mean(-1),
  }
  line = {"benchmark": "rerank_probe", "checkpoint": args.checkpoint or "shipped",
          "prompts": n, "skip": args.skip, "k": k, "t_grid": args.t_grid, "draws": args.draws,
          "one_sample": round(float(right.mean()), 4),
          "oracle_best": round(float(right.any(1).mean()), 4)}
  for name, s in picks.items():
    line[f"pick_{name}"] = round(float(right[np.arange(n), s.argmin(1)].mean()), 4)
  line.update(sample_s=round(t_sample, 1), score_s=round(t_score, 1))
  if args.out:
    np.savez(args.out, right=right, scores=raw)
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()
