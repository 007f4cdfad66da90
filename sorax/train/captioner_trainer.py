"""Trains the world captioner (sorax/models/captioner.py) on world clips with painted faults.

Every clip gives `ROWS` rows, one per asked colour: each object of the clip (broken by a fault
of sorax/data/faults.py with probability `fault_rate`, its motion then `broken` and its shape
and size not asked), then absent colours to fill the rows. Clips are drawn fresh every step
(the world is a pure function of (seed, index)); the held-out check uses another seed. With
`--bank F` (sorax/train/captioner_bank.py) a share of the clips are world clips restyled by the
DiT, so the captioner learns to read the hand it judges; the bank's last clips are held out.

    python -m sorax.train.captioner_trainer [--steps 3000] [--out sorax/assets/captioner_world32.safetensors]
        [--bank runs/cap_bank.npz --bank-share 0.5] [--init F] [--tracks 128]

Prints one JSON line per `--log-every` steps (loss, the held-out accuracy of every head, on
styled clips too with --bank) and saves the weights atomically at the end and every
`--save-every` steps."""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sorax.data import faults, world
from sorax.data.spec import MOTIONS, OBJECT_COLORS, SHAPES, SIZES
from sorax.models import captioner as cap
from sorax.train import captioner_bank

ROWS = 4  # per clip: up to 3 objects, then absent colours


def bank_specs(bank: dict[str, np.ndarray], height: int, width: int, frames: int) -> list:
  """The spec of every clip of a bank (sorax/train/captioner_bank.py): world clip (seed, index)."""
  return [world.make_clip(int(s), int(i), height, width, frames).spec
          for s, i in zip(bank["seed"], bank["index"])]


STYLED_TOL, STYLED_NOISE = 40, 4  # object colours are >= 80 from any other palette colour


def make_rows(seed: int, index: int, n_clips: int, *, height: int = 32, width: int = 32,
              frames: int = 17, fault_rate: float = 0.4, rough_rate: float = 0.5,
              bank: tuple[np.ndarray, list] | None = None,
              bank_share: float = 0.0,
              fault_kinds: tuple[str, ...] = faults.DEFAULT_FAULTS,
              benign: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
  """n_clips clips as n_clips * ROWS rows: video uint8 [N, T, H, W, 3], color / present /
  shape / size / motion int [N], `known` [N] (1 where shape and size are asked: a present,
  unbroken object) and `wall` [N] (1 where the row's clip has a wall). Each clip is, with
  probability `bank_share`, a random clip of `bank` (videos [M, T, H, W, 3] in the DiT's hand,
  their specs), else world clip index + i of the world `seed`. A share `rough_rate` of the
  world rows is roughened as a generator draws (faults.roughen: ragged edges, stray pixels);
  bank rows are rough already."""
  rng = np.random.default_rng([seed, index, 7])
  rows = {k: [] for k in ("video", "color", "present", "shape", "size", "motion", "known",
                          "wall")}

  def add(video, color, present=0, shape=0, size=0, motion=0, known=0, styled=False):
    if not styled and rng.random() < rough_rate:
      video = faults.roughen(video, rng)
    wall = int(spec.wall)  # the clip being added (the loop's spec): faults never touch it
    for k, v in zip(rows, (video, cap.COLORS.index(color), present, shape, size, motion, known,
                           wall)):
      rows[k].append(v)

  for i in range(n_clips):
    styled = bank is not None and rng.random() < bank_share
    if styled:
      j = int(rng.integers(len(bank[0])))
      video, spec = bank[0][j], bank[1][j]
    else:
      clip = world.make_clip(seed, index + i, height, width, frames)
      video, spec = clip.video, clip.spec
    tol, noise = (STYLED_TOL, STYLED_NOISE) if styled else (0, 0)
    bg = world.BACKGROUNDS[spec.background]
    for o in spec.objects:
      rgb = OBJECT_COLORS[o.color]
      seen, broken = video, False
      kinds = [k for k in fault_kinds if k != "stall" or o.motion in faults.STALL_MOTIONS]
      if rng.random() < fault_rate and kinds and faults.color_mask(video, rgb, tol).any():
        kind = str(rng.choice(kinds))
        seen = faults.paint(video, rgb, kind, rng, bg, tol=tol, noise=noise)
        broken = kind not in benign  # benign: painted, but read as the object it was
      if broken:
        add(seen, o.color, 1, 0, 0, cap.BROKEN, 0, styled=styled)
      else:
        add(seen, o.color, 1, SHAPES.index(o.shape), SIZES.index(o.size),
            MOTIONS.index(o.motion), 1, styled=styled)
    asked = {o.color for o in spec.objects}
    absent = [c for c in cap.COLORS if c not in asked]
    for c in rng.choice(absent, size=ROWS - len(spec.objects), replace=False):
      add(video, str(c), styled=styled)
  return {k: np.stack(v) if k == "video" else np.asarray(v, np.int32) for k, v in rows.items()}


def loss_fn(model: cap.Captioner, batch) -> tuple[jax.Array, dict[str, jax.Array]]:
  video = batch["video"].astype(jnp.float32) / 255.0
  out = model(video, batch["color"])
  present = batch["present"].astype(jnp.float32)
  known = batch["known"].astype(jnp.float32)
  l_present = jnp.mean(optax.sigmoid_binary_cross_entropy(out["present"], present))

  def ce(name, weight):
    lce = optax.softmax_cross_entropy_with_integer_labels(out[name], batch[name])
    return jnp.sum(lce * weight) / jnp.maximum(jnp.sum(weight), 1.0)

  l_shape, l_size, l_motion = ce("shape", known), ce("size", known), ce("motion", present)
  loss = l_present + l_shape + l_size + l_motion
  parts = {"present": l_present, "shape": l_shape, "size": l_size, "motion": l_motion}
  if "wall" in out:
    parts["wall"] = jnp.mean(optax.sigmoid_binary_cross_entropy(
        out["wall"], batch["wall"].astype(jnp.float32)))
    loss = loss + parts["wall"]
  return loss, parts


@nnx.jit
def train_step(model, optimizer, batch):
  diff = nnx.DiffState(0, optimizer.wrt)  # the optimizer's parameters (all, or the wall reader)
  (loss, parts), grads = nnx.value_and_grad(loss_fn, argnums=diff, has_aux=True)(model, batch)
  optimizer.update(model, grads)
  return loss, parts


@nnx.jit
def predict(model, video, color):
  return model(video.astype(jnp.float32) / 255.0, color)


def accuracy(model: cap.Captioner, batch) -> dict[str, float]:
  """Held-out accuracy of each head on the rows it is asked on."""
  out = jax.tree.map(np.asarray, predict(model, jnp.asarray(batch["video"]),
                                         jnp.asarray(batch["color"])))
  present, known = batch["present"] > 0, batch["known"] > 0
  broken = present & (batch["motion"] == cap.BROKEN)
  pm = out["motion"].argmax(-1)
  wall = ({"wall": float(np.mean((out["wall"] > 0) == (batch["wall"] > 0)))}
          if "wall" in out else {})
  return {**wall,
      "present": float(np.mean((out["present"] > 0) == present)),
      "shape": float(np.mean(out["shape"].argmax(-1)[known] == batch["shape"][known])),
      "size": float(np.mean(out["size"].argmax(-1)[known] == batch["size"][known])),
      "motion": float(np.mean(pm[known] == batch["motion"][known])),
      "broken": float(np.mean(pm[broken] == cap.BROKEN)) if broken.any() else float("nan"),
  }


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=3000)
  ap.add_argument("--clips", type=int, default=32, help="clips a step (x4 rows)")
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--fault-rate", type=float, default=0.4)
  ap.add_argument("--faults", nargs="+", default=list(faults.DEFAULT_FAULTS),
                  choices=faults.FAULTS,
                  help="the fault kinds painted (sorax/data/faults.py; default DEFAULT_FAULTS, "
                       "all but stall)")
  ap.add_argument("--benign-faults", nargs="*", default=[], choices=faults.FAULTS,
                  help="fault kinds labelled as the object they were, not `broken` (an "
                       "experiment: the oracle reads most copies and gaps as right)")
  ap.add_argument("--rough-rate", type=float, default=0.5)
  ap.add_argument("--out", default=cap.ASSET)
  ap.add_argument("--log-every", type=int, default=250)
  ap.add_argument("--save-every", type=int, default=1000)
  ap.add_argument("--eval-clips", type=int, default=256)
  ap.add_argument("--widths", type=int, nargs="+", help="per stage (default: CaptionerConfig's)")
  ap.add_argument("--merges", nargs="+", help="per stage, t,h,w (e.g. 1,4,4 1,2,2 2,1,1)")
  ap.add_argument("--hidden", type=int)
  ap.add_argument("--bank", default=None,
                  help="clips in the DiT's hand (sorax/train/captioner_bank.py); its last "
                       "--bank-heldout clips are held out")
  ap.add_argument("--bank-share", type=float, default=0.5, help="share of clips from --bank")
  ap.add_argument("--bank-heldout", type=int, default=128)
  ap.add_argument("--init", default=None, help="start from these captioner weights")
  ap.add_argument("--tracks", type=int, default=None,
                  help="width of the track branch (CaptionerConfig.tracks; with --init: added "
                       "to the loaded captioner, zero-initialised, if it has none)")
  ap.add_argument("--wall", action="store_true",
                  help="add the wall reader (CaptionerConfig.wall; with --init: to the loaded "
                       "captioner, if it has none)")
  ap.add_argument("--only-wall", action="store_true",
                  help="train the wall reader alone, every other weight frozen (the object "
                       "answers stay bit for bit those of --init)")
  args = ap.parse_args(argv)
  if args.only_wall and not (args.wall and args.init):
    raise ValueError("--only-wall trains the wall reader of an --init captioner: add --wall "
                     "and --init F")
  over = {}
  if args.widths:
    over["widths"] = tuple(args.widths)
  if args.merges:
    over["merges"] = tuple(tuple(int(v) for v in m.split(",")) for m in args.merges)
  if args.hidden:
    over["hidden"] = args.hidden
  if args.init:
    if over:
      raise ValueError("--init takes the config of its weights; drop --widths/--merges/--hidden")
    model = cap.load(args.init)
    if args.tracks is not None and args.tracks != model.cfg.tracks:
      model = cap.with_tracks(model, args.tracks, seed=args.seed)
    if args.wall and not model.cfg.wall:
      model = cap.with_wall(model, seed=args.seed)
    cfg = model.cfg
  else:
    if args.tracks is not None:
      over["tracks"] = args.tracks
    over["wall"] = args.wall
    cfg = cap.CaptionerConfig(**over)
    model = cap.Captioner(cfg, rngs=nnx.Rngs(args.seed))
  rows_kw = dict(height=cfg.height, width=cfg.width, frames=cfg.frames,
                 fault_rate=args.fault_rate, rough_rate=args.rough_rate,
                 fault_kinds=tuple(args.faults), benign=tuple(args.benign_faults))
  bank = held_styled = None
  if args.bank:
    b = captioner_bank.load_bank(args.bank)
    if b["video"].shape[1:4] != (cfg.frames, cfg.height, cfg.width):
      raise ValueError(f"bank {args.bank} holds clips {b['video'].shape[1:4]}, the captioner "
                       f"takes {(cfg.frames, cfg.height, cfg.width)}")
    if len(b["video"]) <= args.bank_heldout:
      raise ValueError(f"bank {args.bank} has {len(b['video'])} clips: too few to hold out "
                       f"{args.bank_heldout}")
    specs = bank_specs(b, cfg.height, cfg.width, cfg.frames)
    cut = len(specs) - args.bank_heldout
    bank = (b["video"][:cut], specs[:cut])
    held_styled = make_rows(args.seed + 1_000_003, 0, args.bank_heldout,
                            bank=(b["video"][cut:], specs[cut:]), bank_share=1.0, **rows_kw)
  sched = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(200, args.steps // 10 + 1),
                                             args.steps, 0.05 * args.lr)
  wrt = nnx.All(nnx.Param, nnx.PathContains("wall_head")) if args.only_wall else nnx.Param
  optimizer = nnx.Optimizer(model, optax.adamw(sched, weight_decay=1e-4), wrt=wrt)
  held = make_rows(args.seed + 1_000_003, 0, args.eval_clips, **rows_kw)
  t0, logs = time.perf_counter(), []
  for step in range(1, args.steps + 1):
    batch = make_rows(args.seed, step * args.clips, args.clips, bank=bank,
                      bank_share=args.bank_share, **rows_kw)
    loss, parts = train_step(model, optimizer, jax.tree.map(jnp.asarray, batch))
    logs.append(float(loss))
    if step % args.log_every == 0 or step == args.steps:
      line = {"step": step, "loss": round(float(np.mean(logs)), 4),
              **{k: round(float(v), 4) for k, v in parts.items()},
              "heldout": {k: round(v, 4) for k, v in accuracy(model, held).items()},
              **({"heldout_styled": {k: round(v, 4) for k, v in
                                     accuracy(model, held_styled).items()}}
                 if held_styled is not None else {}),
              "s": round(time.perf_counter() - t0, 1)}
      print(json.dumps(line), flush=True)
      logs = []
    if step % args.save_every == 0 or step == args.steps:
      cap.save(args.out, model, meta={"step": step, "seed": args.seed,
                                      "fault_rate": args.fault_rate,
                                      "rough_rate": args.rough_rate,
                                      "faults": ",".join(args.faults),
                                      "benign_faults": ",".join(args.benign_faults),
                                      "bank": args.bank or "", "bank_share": args.bank_share,
                                      "init": args.init or "", "tracks": cfg.tracks,
                                      "wall": cfg.wall, "only_wall": args.only_wall})
  print(f"saved {args.out}", file=sys.stderr)


if __name__ == "__main__":
  main()
