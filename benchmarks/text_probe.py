"""Linear probe: can each object's colour, shape, size and motion (and the background and wall)
be read from a trained text encoder's output? Prints one JSON line of held-out accuracies.

    python benchmarks/text_probe.py --checkpoint runs/sr_keep [--train 3000 --test 1000]

Features of a terse caption: the encoder's output tokens mean-pooled over each object's words
(the caption's "<size> <color> <shape> <motion>" span, found through the tokenizer's offsets of
the words "and") and over the whole caption for the background and the wall. A ridge regression
onto one-hot labels (closed form, numpy) is fitted on `--train` random specs and scored on
`--test` others; chance is 1 / classes. A low probe accuracy means the DiT cannot be told that
attribute, whatever it learns. `word_separation` adds the cosine of the outputs for captions
that differ in one word ("moving left" vs "moving right"): near 1, the words have collapsed.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np
from flax import nnx

from sorax.data import world
from sorax.sample import Pipeline


def _features(pipe: Pipeline, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """-> (pooled features [N, D], per-token features [N, L, D] with mask folded in as zeros)."""
  model = nnx.merge(pipe.graphdef, pipe.params)
  ids, mask = pipe.tokenizer.encode(captions, pipe.cfg.data.text_len)
  enc = jax.jit(lambda i, m: model.encode_text(i, m))
  feats = []
  for s in range(0, len(captions), 256):
    feats.append(np.asarray(enc(ids[s:s + 256], mask[s:s + 256])))
  f = np.concatenate(feats) * mask[..., None]
  return f.sum(1) / mask.sum(1, keepdims=True), f


def _object_spans(pipe: Pipeline, caption: str, n_obj: int) -> list[tuple[int, int]]:
  """Token index ranges (1-based after BOS) of each object's phrase in a terse caption."""
  head = caption.split(" on a ")[0]
  parts = head.split(" and ")
  spans, pos = [], 1
  for k, part in enumerate(parts[:n_obj]):
    text = " and ".join(parts[:k + 1])
    end = 1 + len(pipe.tokenizer.sp.encode(text))
    spans.append((pos, end))
    pos = end
  return spans


def ridge_predict(x_tr, y_tr, x_te, classes: int, lam: float = 1e-2) -> np.ndarray:
  """Class predictions for x_te of a ridge regression onto one-hot labels (closed form)."""
  mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
  a = np.c_[(x_tr - mu) / sd, np.ones(len(x_tr))]
  b = np.c_[(x_te - mu) / sd, np.ones(len(x_te))]
  onehot = np.eye(classes)[y_tr]
  w = np.linalg.solve(a.T @ a + lam * len(a) * np.eye(a.shape[1]), a.T @ onehot)
  return (b @ w).argmax(1)


def ridge_accuracy(x_tr, y_tr, x_te, y_te, classes: int, lam: float = 1e-2) -> float:
  return float(np.mean(ridge_predict(x_tr, y_tr, x_te, classes, lam) == y_te))


# Captions that differ in one word, for `word_separation`: (word a, word b, caption template).
WORD_PAIRS = (("left", "right", "a small {c} circle moving {w} on a black background"),
              ("up", "down", "a large {c} square moving {w} on a navy background"),
              ("circle", "square", "a small {c} {w} falling on a black background"),
              ("growing", "shrinking", "a large {c} diamond {w} on a forest background"),
              ("small", "large", "a {w} {c} triangle moving up on a maroon background"),
              ("red", "blue", "a small {w} circle bouncing on a black background"))


def word_separation(pipe: Pipeline) -> dict[str, float]:
  """Cosine, at the token where they differ most, of the encoder's outputs for two captions
  that differ in one word (mean over object colours). Near 1: the DiT is told the same thing
  for both words, so it cannot follow either."""
  out = {}
  for a, b, tmpl in WORD_PAIRS:
    cos = []
    for c in ("red", "green", "white", "yellow") if "{c}" in tmpl else ("red",):
      caps = [tmpl.format(c=c, w=a), tmpl.format(c=c, w=b)]
      _, f = _features(pipe, caps)
      n = min(int((np.abs(x).sum(-1) > 0).sum()) for x in f)
      u, v = f[0, :n], f[1, :n]
      per_pos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1) + 1e-9)
      cos.append(float(per_pos.min()))
    out[f"{a}/{b}"] = round(float(np.mean(cos)), 3)
  return out


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--checkpoint", default=None, help="workdir or .safetensors (default: shipped)")
  ap.add_argument("--train", type=int, default=3000)
  ap.add_argument("--test", type=int, default=1000)
  args = ap.parse_args(argv)
  pipe = Pipeline.load(args.checkpoint)
  d = pipe.cfg.data
  rng = np.random.default_rng(12345)
  specs = [world.random_spec(rng, d.height, d.width, d.frames) for _ in range(args.train + args.test)]
  caps = [world.caption(s, "terse", rng) for s in specs]
  pooled, tokens = _features(pipe, caps)
  vocab = {"color": list(world.OBJECT_COLORS), "shape": list(world.SHAPES),
           "size": list(world.SIZES), "motion": list(world.MOTIONS)}
  obj_x = {a: ([], []) for a in vocab}
  split = []
  for i, (s, c) in enumerate(zip(specs, caps)):
    for o, (lo, hi) in zip(s.objects, _object_spans(pipe, c, len(s.objects))):
      f = tokens[i, lo:hi].mean(0)
      for a in vocab:
        obj_x[a][0].append(f)
        obj_x[a][1].append(vocab[a].index(getattr(o, a)))
      split.append(i < args.train)
  split = np.array(split)
  out = {"benchmark": "text_probe", "checkpoint": args.checkpoint or "shipped",
         "train_specs": args.train, "test_specs": args.test}
  for a in vocab:
    x, y = np.array(obj_x[a][0]), np.array(obj_x[a][1])
    out[a] = round(ridge_accuracy(x[split], y[split], x[~split], y[~split], len(vocab[a])), 4)
    out[a + "_chance"] = round(1 / len(vocab[a]), 3)
  # Which motions are mistaken for which: a probe that confuses "left" with "right" means the
  # DiT cannot be told the direction, however well it draws a move.
  x, y = np.array(obj_x["motion"][0]), np.array(obj_x["motion"][1])
  pred = ridge_predict(x[split], y[split], x[~split], len(vocab["motion"]))
  out["motion_per_class"] = {
      m: round(float(np.mean(pred[y[~split] == k] == k)), 3) if np.any(y[~split] == k) else None
      for k, m in enumerate(vocab["motion"])}
  out["motion_confusions"] = {
      f"{vocab['motion'][k]}->{vocab['motion'][j]}": int(np.sum((y[~split] == k) & (pred == j)))
      for k in range(len(vocab["motion"])) for j in range(len(vocab["motion"]))
      if k != j and np.sum((y[~split] == k) & (pred == j)) >= 5}
  tr = np.arange(len(specs)) < args.train
  bg = np.array([list(world.BACKGROUNDS).index(s.background) for s in specs])
  wall = np.array([int(s.wall) for s in specs])
  out["background"] = round(ridge_accuracy(pooled[tr], bg[tr], pooled[~tr], bg[~tr], 4), 4)
  out["wall"] = round(ridge_accuracy(pooled[tr], wall[tr], pooled[~tr], wall[~tr], 2), 4)
  out["word_separation"] = word_separation(pipe)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
