"""Does fine-tuning the top of the MiniLM encoder beat the semantic layer's frozen embeddings?

    python benchmarks/policy_finetune_cv.py [--variants base,ft] [--folds 5] [--epochs 6] [--top 3]
        [--benign-weight W] [--ft-seed S] [--save-oof F.npz] [--set F.jsonl]
    python benchmarks/policy_finetune_cv.py --summarize A.npz,B.npz [--set F.jsonl]

5-fold cross-validation on the TRAINING split of sorax/assets/policy_prompts.jsonl only (the
held-out split is never read). The hidden states entering MiniLM's top --top layers are computed once
(cached under --cache); each variant then trains on 4 folds and scores the fifth:
  base      today's layer: fit_softmax on frozen mean-pooled sentence embeddings
  ft        the last --top transformer layers + a softmax head (initialised from `base`),
            class-balanced cross-entropy, Adam, weight decay toward the pretrained weights; mean pooling
            (sorax/safety/semantic_tune.py: the shipped layer's training; --pool attn: attention
            pooling; --train none: only the head trains, the control)
  ft_refit  `ft`'s encoder, then the head re-fitted by fit_softmax (what a load-time fit would do)
The word list goes first, as in the policy: a row is refused when one of its terms matches, when
a review term matches and the top unsafe probability is >= policy.semantic.review_threshold, or
when that probability is >= the threshold (`:no_review`: every term refuses on sight, as before
review terms). Prints one JSON line: per variant, recall and benign refusal at thresholds 0.3
to 0.9, and the recall at the lowest threshold whose benign refusal is <= 0.05 / 0.03
(out-of-fold scores pooled).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time

import jax.numpy as jnp
import numpy as np

from sorax import config as config_lib
from sorax.safety import semantic
from sorax.safety import semantic_tune as tune
from sorax.safety.guard import SAFETY_CONFIG
from sorax.safety.policy import Policy



def build_cache(rows, path: pathlib.Path, top: int = 1):
  """Hidden states entering the last `top` layers, per row (float32), + those pretrained layers."""
  from sorax.models.minilm import load_minilm  # noqa: PLC0415
  model, tok = load_minilm()
  states = tune.lower_states(model, tok, [r["prompt"] for r in rows], top=top)
  ps = tune.top_params(model, top)
  np.savez(path, states=np.concatenate(states),
           offsets=np.concatenate([[0], np.cumsum([len(h) for h in states])]),
           **{f"p/{j}/{a}/{b}": np.asarray(v) for j, p in enumerate(ps) for a, d in p.items()
              for b, v in d.items()})


def load_cache(path):
  """-> (states per row, the pretrained top layers' params, lowest first)."""
  z = np.load(path)
  ps: dict = {}
  for k in z.files:
    if k.startswith("p/"):
      _, j, a, b = k.split("/")
      ps.setdefault(int(j), {}).setdefault(a, {})[b] = jnp.asarray(z[k])
  off, flat = z["offsets"], z["states"]  # each z[...] re-reads the file: once
  return [flat[off[i]:off[i + 1]] for i in range(len(off) - 1)], [ps[j] for j in sorted(ps)]


# ------------------------------------------------------------------ scoring
def summarize(scores, labels, lexical, written, review=None, review_threshold=0.0,
              thresholds=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)):
  """scores: top unsafe probability per row; labels 0 = benign; lexical: a term refused it;
  review: a review term matched it (refused at scores >= review_threshold); written: a written
  look-alike, not a world caption or a short generic row (benign refusal is over those benign
  rows, as in BUILD_NOTES; the others are counted apart in main)."""
  unsafe, benign = labels != 0, (labels == 0) & written
  if review is not None:
    lexical = lexical | (review & (scores >= review_threshold))

  def at(t):
    refused = lexical | (scores >= t)
    return round(float(refused[unsafe].mean()), 4), round(float(refused[benign].mean()), 4)

  out = {f"t{t}": at(t) for t in thresholds}
  for cap in (0.05, 0.03):
    cand = sorted(set(np.round(scores, 6)) | {1.0})
    best = None
    for t in cand:  # lowest threshold with benign refusal <= cap: the highest recall
      r, b = at(t)
      if b <= cap:
        best = (round(float(t), 4), r, b)
        break
    out[f"at_benign<={cap}"] = best
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--variants", default="base,ft,ft_refit")
  ap.add_argument("--folds", type=int, default=5)
  ap.add_argument("--cache", default="/tmp/sorax_policy_ft_cache{top}.npz",
                  help="where the hidden states are cached ({top}: --top)")
  ap.add_argument("--epochs", type=int, default=tune.FT.epochs)
  ap.add_argument("--lr", type=float, default=tune.FT.lr)
  ap.add_argument("--head-lr", type=float, default=tune.FT.head_lr)
  ap.add_argument("--decay", type=float, default=tune.FT.decay)
  ap.add_argument("--train", default=tune.FT.train)
  ap.add_argument("--pool", default=tune.FT.pool, choices=("mean", "attn"))
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--top", type=int, default=tune.FT.top,
                  help="how many of MiniLM's last layers the ft variants train")
  ap.add_argument("--benign-weight", type=float, default=tune.FT.benign_weight,
                  help="multiplies the benign class's balanced weight in the ft loss")
  ap.add_argument("--focal", type=float, default=0.0, help="focal loss exponent (0: plain)")
  ap.add_argument("--ft-seed", type=int, default=None,
                  help="the fine-tune's seed (batch order), default --seed; --seed picks the folds")
  ap.add_argument("--save-oof", default="",
                  help="write the out-of-fold class probabilities (per variant) to this .npz")
  ap.add_argument("--set", default=str(semantic.PROMPT_SET),
                  help="labelled prompt set whose TRAINING split is cross-validated")
  ap.add_argument("--summarize", default="",
                  help="comma-separated --save-oof files: no training, score the mean of their "
                       "ft probabilities (a seed ensemble, or one file) under today's word list")
  args = ap.parse_args(argv)
  t0 = time.perf_counter()

  cfg = config_lib.load_file(str(SAFETY_CONFIG)).policy.to_dict()
  policy = Policy.from_config(cfg)
  classes = (semantic.BENIGN, *[c.name for c in policy.categories if c.block])
  rows = semantic.load_prompt_set(args.set, split="train")  # never the held-out split
  labels = np.array([classes.index(r["label"]) for r in rows])
  # benign refusal is over the written look-alikes: not the world captions, and not the short
  # generic rows ("", "video"; "source": "generic"), counted apart so runs before them compare
  written = np.array([r.get("source") not in ("world", "generic") for r in rows])
  generic = np.array([r.get("source") == "generic" for r in rows])
  hits = policy.lexical_hits([r["prompt"] for r in rows])
  lexical = np.array([hard is not None for hard, _ in hits])  # a term: refused on sight
  review = np.array([hard is None and rev is not None for hard, rev in hits])
  def both(name, scores):
    """The policy's decisions (review terms at the settings' review threshold), and `:no_review`:
    every term refusing on sight, the policy before review terms."""
    return {name: summarize(scores, labels, lexical, written, review, policy.review_threshold()),
            f"{name}:no_review": summarize(scores, labels, lexical | review, written)}

  if args.summarize:
    files = args.summarize.split(",")
    zs = [np.load(f) for f in files]
    if any(len(z["labels"]) != len(rows) or (z["labels"] != labels).any() for z in zs):
      sys.exit("policy_finetune_cv: --summarize files are not of today's training split")
    probs = np.mean([z["probs_ft"] for z in zs], 0)
    print(json.dumps({"benchmark": "policy_finetune_cv", "summarize": files,
                      "review_threshold": policy.review_threshold(),
                      **both("ft", probs[:, 1:].max(-1))}))
    return 0
  cache = pathlib.Path(args.cache.format(top=args.top))
  if not cache.is_file():
    build_cache(rows, cache, args.top)
  states, p0 = load_cache(cache)
  assert len(states) == len(rows)

  perm = np.random.default_rng(args.seed).permutation(len(rows))
  folds = [np.sort(perm[k::args.folds]) for k in range(args.folds)]
  variants = args.variants.split(",")
  probs = {v: np.zeros((len(rows), len(classes))) for v in variants}
  ft_cfg = tune.FT(epochs=args.epochs, lr=args.lr, head_lr=args.head_lr, decay=args.decay,
                   train=args.train, pool=args.pool,
                   seed=args.seed if args.ft_seed is None else args.ft_seed, top=args.top,
                   benign_weight=args.benign_weight)
  e0 = tune.embed_states(p0, states, np.arange(len(rows)))
  for k, val in enumerate(folds):
    tr = np.setdiff1d(np.arange(len(rows)), val)
    w0, b0 = semantic.fit_softmax(e0[tr], labels[tr], len(classes))
    if "base" in variants:
      probs["base"][val] = semantic.softmax(e0[val] @ w0 + b0)
    if "ft" in variants or "ft_refit" in variants:
      p, w, b, a = tune.finetune(p0, w0, b0, states, tr, labels[tr], len(classes), ft_cfg,
                                 focal=args.focal)
      ev = tune.embed_states(p, states, val, a)
      if "ft" in variants:
        probs["ft"][val] = semantic.softmax(ev @ w + b)
      if "ft_refit" in variants:
        e2 = tune.embed_states(p, states, tr, a)
        w2, b2 = semantic.fit_softmax(e2, labels[tr], len(classes))
        probs["ft_refit"][val] = semantic.softmax(ev @ w2 + b2)
    print(f"fold {k}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
  oof = {v: probs[v][:, 1:].max(-1) for v in variants}  # the policy's score: the top unsafe class
  if args.save_oof:
    np.savez(args.save_oof, labels=labels, lexical=lexical, review=review, written=written,
             generic=generic,
             **{f"probs_{v}": probs[v] for v in variants})
  line = {"benchmark": "policy_finetune_cv", "rows": len(rows), "folds": args.folds,
          "ft_cfg": dataclasses.asdict(ft_cfg),
          "world_refused": {v: int(((oof[v] >= 0.5) & ~written & ~generic).sum())
                            for v in variants},
          "generic_refused": {v: f"{int(((oof[v] >= 0.5) & generic).sum())} of {int(generic.sum())}"
                              for v in variants},
          "benign_weight": args.benign_weight, "focal": args.focal,
          "review_threshold": policy.review_threshold(),
          **{k: r for v in variants for k, r in both(v, oof[v]).items()},
          "seconds": round(time.perf_counter() - t0, 1)}
  print(json.dumps(line))
  return 0


if __name__ == "__main__":
  sys.exit(main())
