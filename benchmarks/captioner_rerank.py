"""Best-of-K by the learned captioner, on saved candidates: how much of the oracle's ceiling
does a judge that reads the video and the words reach?

The candidates are rerank_probe.py's (`--videos F`: [n, K, T, H, W, 3], prompt i's K seeds,
the speedrun's held-out prompts 0..n-1). Each is captioned for every object colour and scored
by log p(prompt's caption | video) (sorax/models/captioner.py); the oracle only grades.
Prints one JSON line: all-right of one sample (the mean over candidates), of the captioner's
pick at K = 2 and K, and of the oracle's best (the ceiling), the pairwise AUC (a right
candidate scored above a wrong one of the same prompt), and the captioner's own agreement with
what the oracle reads in the candidates, per head (`agree_shape`, ...: oracle_agreement).

    python benchmarks/captioner_rerank.py --videos runs/cand_v16_128x4.npy [--captioner F]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from speedrun import heldout_prompts  # noqa: E402  (a sibling benchmark, not a package)

from sorax.data import oracle  # noqa: E402
from sorax.models import captioner as cap  # noqa: E402


def oracle_agreement(model, videos, specs, reads) -> dict[str, float]:
  """How often the captioner's answer (argmax) about an asked object is what the oracle reads
  in the candidate, per head, over the objects whose colour the oracle finds: shape, size,
  motion (where the oracle reads a world motion) and broken (where it reads none); and, for a
  captioner with a wall reader, whether a wall stands, per candidate. The oracle
  only grades here; the captioner never saw it. reads[i][j]: oracle.explain_video of
  candidate j of prompt i."""
  import jax.numpy as jnp  # noqa: PLC0415

  from sorax.data.spec import SHAPES, SIZES  # noqa: PLC0415
  hits = {"shape": [], "size": [], "motion": [], "broken": [], "wall": []}
  for i in range(videos.shape[0]):
    objs = specs[i].objects
    cols = jnp.asarray([cap.COLORS.index(o.color) for o in objs], jnp.int32)
    for j in range(videos.shape[1]):
      read = reads[i][j]["objects"]
      lg = cap._logits(model, jnp.asarray(np.repeat(videos[i, j][None], len(objs), 0)), cols)
      if "wall" in lg:  # the wall reader (CaptionerConfig.wall): a wall stands, or not
        hits["wall"].append(bool(np.asarray(lg["wall"])[0] > 0) == bool(reads[i][j]["wall"]))
      lg = {k: np.asarray(v).argmax(-1) for k, v in lg.items() if k not in ("present", "wall")}
      for r, res in enumerate(read):
        if not res["color"]:
          continue
        if res["shape"] is not None:
          hits["shape"].append(SHAPES[lg["shape"][r]] == res["shape"])
        if res["size"] is not None:
          hits["size"].append(SIZES[lg["size"][r]] == res["size"])
        said = cap.MOTION_CLASSES[lg["motion"][r]]
        if res["motion"] is not None:
          hits["motion"].append(said == res["motion"])
        else:
          hits["broken"].append(said == "broken")
  return {f"agree_{k}": round(float(np.mean(v)), 4) if v else float("nan")
          for k, v in hits.items()}


def write_sheet(path, videos, prompts, right, scores, n_prompts: int) -> None:
  """Every candidate of the first `n_prompts` prompts whose pick is not candidate 0, each
  under its prompt with its score, the oracle's verdict and the pick marked."""
  from PIL import Image  # noqa: PLC0415

  from sorax.contact_sheet import contact_sheet  # noqa: PLC0415
  rows, texts, notes = [], [], []
  for i in [i for i in range(len(videos)) if scores[i].argmax() != 0][:n_prompts]:
    for j in range(videos.shape[1]):
      rows.append(videos[i, j])
      texts.append(f"{prompts[i]} (seed {j})" if j == 0 else f"seed {j}")
      notes.append(f"log p {scores[i, j]:.1f}; oracle: {'all right' if right[i, j] else 'wrong'}"
                   + ("  <- captioner's pick" if j == scores[i].argmax() else ""))
  tmp = pathlib.Path(str(path) + ".tmp.png")
  Image.fromarray(contact_sheet(rows, texts, notes=notes)).save(tmp)
  tmp.replace(path)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--videos", required=True)
  ap.add_argument("--captioner", default=None)
  ap.add_argument("--skip", type=int, default=0, help="the candidates are prompts skip..")
  ap.add_argument("--no-agreement", action="store_true",
                  help="skip the per-head agreement with the oracle (~20 s per 512 candidates)")
  ap.add_argument("--out", default=None, help="also save right / scores (.npz)")
  ap.add_argument("--sheet", default=None,
                  help="also write a contact sheet (.png) of every candidate of the first "
                       "--sheet-prompts prompts where the pick is not the first sample")
  ap.add_argument("--sheet-prompts", type=int, default=3)
  ap.add_argument("--weights", default=None,
                  help="answer weights of the score, e.g. present=1,shape=1,size=0.5,motion=1 "
                       "(default captioner.SCORE_WEIGHTS)")
  args = ap.parse_args()
  weights = None
  if args.weights:
    weights = {k: float(v) for k, v in (kv.split("=") for kv in args.weights.split(","))}
    if set(weights) - set(cap.SCORE_WEIGHTS):
      ap.error(f"--weights: unknown answers {sorted(set(weights) - set(cap.SCORE_WEIGHTS))}; "
               f"choose from {sorted(cap.SCORE_WEIGHTS)}")
    weights = {**cap.SCORE_WEIGHTS, **weights}
  videos = np.load(args.videos)  # [n, K, T, H, W, 3]
  n, k = videos.shape[:2]
  prompts, specs = heldout_prompts(args.skip + n, *videos.shape[3:5], videos.shape[2])
  prompts, specs = prompts[args.skip:], specs[args.skip:]
  model = cap.load(args.captioner)
  t0 = time.perf_counter()
  scores = np.stack([cap.score_videos(model, videos[:, j], [s.objects for s in specs],
                                      weights=weights, walls=[s.wall for s in specs])
                     for j in range(k)], 1)  # [n, K], higher is better
  t_score = time.perf_counter() - t0
  reads = [[oracle.explain_video(videos[i, j], specs[i]) for j in range(k)] for i in range(n)]
  right = np.array([[bool(r["checks"]["all_right"]) for r in row] for row in reads])
  line = {"benchmark": "captioner_rerank", "videos": args.videos,
          "captioner": args.captioner or cap.ASSET, "weights": weights or cap.SCORE_WEIGHTS,
          "prompts": n, "k": k,
          "one_sample": round(float(right.mean()), 4),
          "first_sample": round(float(right[:, 0].mean()), 4)}
  for kk in sorted({2, k}):
    pick = scores[:, :kk].argmax(1)
    line[f"captioner_best_of_{kk}"] = round(float(right[np.arange(n), pick].mean()), 4)
    line[f"oracle_best_of_{kk}"] = round(float(right[:, :kk].any(1).mean()), 4)
  # Pairwise: within a prompt, does a right candidate score above a wrong one?
  wins = total = 0
  for i in range(n):
    for a in np.flatnonzero(right[i]):
      for b in np.flatnonzero(~right[i]):
        wins += scores[i, a] > scores[i, b]
        total += 1
  line["pairwise_auc"] = round(wins / max(total, 1), 4)
  line["score_s"] = round(t_score, 1)
  if not args.no_agreement:
    line.update(oracle_agreement(model, videos, specs, reads))
  if args.out:
    np.savez(args.out, right=right, scores=scores)
  if args.sheet:
    write_sheet(args.sheet, videos, prompts, right, scores, args.sheet_prompts)
  print(json.dumps(line), flush=True)


if __name__ == "__main__":
  main()
