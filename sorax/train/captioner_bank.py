"""A bank of world clips restyled by the DiT, for training the captioner on what it will judge.

The captioner judges the DiT's samples, whose objects have ragged edges, stray pixels and
streaks that world clips never have: trained on world clips alone it reads 48% of their shapes
and 62% of their motions differently from the oracle (BUILD_NOTES, "The captioner
trained on the DiT's hand"). SDEdit gives clips in the DiT's own hand whose labels are still known: world clip
(seed, index) is encoded, noised to t = strength and denoised by the shipped DiT under its own
terse caption; at strength <= 0.6 the objects keep their colour, shape, size and motion (the
oracle reads 0.88 of them all right at 0.5) while taking the DiT's look.

    python -m sorax.train.captioner_bank --clips 1536 --out runs/cap_bank.npz

The bank holds video uint8 [N, T, H, W, 3], the world `seed` and `index` of each clip (its spec
is world.make_clip(seed, index, ...).spec) and its `strength`. It is written atomically after
every chunk and a rerun resumes from it (same --seed; clips are drawn in index order).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

from sorax.data import world
from sorax.data.video_write import atomic_output

BANK_SEED = 71  # the world seed of the bank's clips (not the held-out seed)


def load_bank(path) -> dict[str, np.ndarray]:
  """The bank at `path`: video, seed, index, strength. A missing file is one clear error."""
  p = pathlib.Path(path)
  if not p.is_file():
    raise FileNotFoundError(f"captioner bank {p} not found (build one with "
                            f"`python -m sorax.train.captioner_bank --out {p}`)")
  with np.load(p) as d:
    missing = {"video", "seed", "index", "strength"} - set(d.files)
    if missing:
      raise ValueError(f"captioner bank {p}: missing arrays {sorted(missing)}")
    return {k: d[k] for k in d.files}


def _save(path: pathlib.Path, bank: dict[str, np.ndarray]) -> None:
  with atomic_output(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, **bank)


def build(pipe, out, clips: int, *, seed: int = BANK_SEED,
          strength: tuple[float, float] = (0.3, 0.6), chunk: int = 32) -> dict[str, np.ndarray]:
  """Grows the bank at `out` to `clips` clips restyled by `pipe` (a sorax.sample.Pipeline; its
  policy is not asked: world captions only), resuming what is there, and returns it."""
  out = pathlib.Path(out)
  bank = load_bank(out) if out.is_file() else None
  if bank is not None and int(bank["seed"][0]) != seed:
    raise ValueError(f"{out} holds world seed {int(bank['seed'][0])}, not --seed {seed}")
  done = 0 if bank is None else len(bank["video"])
  d = pipe.cfg.data
  rng = np.random.default_rng([seed, done])
  t0 = time.perf_counter()
  while done < clips:
    n = min(chunk, clips - done)
    batch = [world.make_clip(seed, done + i, d.height, d.width, d.frames) for i in range(n)]
    s = float(rng.uniform(*strength))
    video = pipe.generate([c.captions["terse"] for c in batch],
                          known=pipe.encode(np.stack([c.video for c in batch])),
                          strength=s, batch_size=n, seed=done, best_of=1)
    new = {"video": video, "seed": np.full(n, seed, np.int64),
           "index": np.arange(done, done + n, dtype=np.int64),
           "strength": np.full(n, s, np.float32)}
    bank = new if bank is None else {k: np.concatenate([bank[k], new[k]]) for k in new}
    _save(out, bank)
    done += n
    print(f"{done}/{clips} clips, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
          flush=True)
  return bank


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--clips", type=int, default=1536)
  ap.add_argument("--out", required=True)
  ap.add_argument("--checkpoint", default=None, help="the DiT (default: the shipped one)")
  ap.add_argument("--seed", type=int, default=BANK_SEED, help="world seed of the clips")
  ap.add_argument("--strength", type=float, nargs=2, default=(0.3, 0.6),
                  help="SDEdit strength, drawn uniformly per chunk from [lo, hi]")
  ap.add_argument("--chunk", type=int, default=32)
  args = ap.parse_args(argv)
  from sorax.sample import Pipeline  # noqa: PLC0415 (the DiT is only needed here)
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = None  # world captions only
  build(pipe, args.out, args.clips, seed=args.seed, strength=tuple(args.strength),
        chunk=args.chunk)


if __name__ == "__main__":
  main()
