"""Fixed-budget speedrun: train a recipe for M minutes of wall time, then score it on held-out
prompts with the world's oracle. Prints one JSON line (and appends it to --log).

    python benchmarks/speedrun.py --config experiments/world.py:world32 --minutes 10 \
        [--name RECIPE] [--config.key=value ...] [--prompts 128] [--keep runs/sr_x]

The budget counts everything from building the trainer (init, compile, data) to the last step.
The learning-rate schedule is the config's (warmup, cosine to end_lr_frac), stretched over the
steps the budget is expected to hold: after 10 timed steps the step rate fixes `train.steps`
and the step is compiled once more with that schedule (the optimizer state keeps its shape).

The held-out set is fixed: `--prompts` terse captions of specs drawn with evaluate.HELDOUT_SEED
at the training canvas (1-3 objects, walls about one clip in five), sampled with seed 0, scored
as uint8 arrays (no watermark or mp4: what the model makes, not the writer).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

from sorax import config as config_lib
from sorax.data import oracle, world
from sorax.evaluate import heldout_specs, json_safe
from sorax.sample import Pipeline
from sorax.train import state as state_lib
from sorax.train.trainer import Trainer
from sorax.train.validate import val_losses


def heldout_prompts(n: int, height: int, width: int, frames: int):
  specs = heldout_specs(n, height, width, frames, max_objects=3, wall_prob=0.25)
  rng = np.random.default_rng(0)
  return [world.caption(s, "terse", rng) for s in specs], specs


def evaluate(pipe: Pipeline, n: int, *, steps=None, cfg_scale=None, batch_size: int = 32):
  d = pipe.cfg.data
  prompts, specs = heldout_prompts(n, d.height, d.width, d.frames)
  videos = pipe.generate(prompts, seed=0, steps=steps, cfg_scale=cfg_scale, best_of=1,
                         batch_size=batch_size)
  results = [oracle.score_video(v, s) for v, s in zip(videos, specs)]
  return json_safe(oracle.score_videos(list(videos), specs)), results, prompts, specs, videos


def one_object_rate(results, specs) -> float | None:
  """all-right over the one-object prompts alone (the first rate to leave zero)."""
  one = [r["all_right"] for r, s in zip(results, specs) if len(s.objects) == 1]
  return round(float(np.mean(one)), 4) if one else None


def pipeline_of(trainer: Trainer, step: int) -> Pipeline:
  cfg = trainer.cfg.copy_and_resolve_references()
  return Pipeline(cfg=cfg, graphdef=trainer.graphdef, params=trainer.state.ema,
                  tokenizer=trainer.tokenizer, step=step, latent_stats=trainer.latent_stats,
                  policy=None)


def train_for(cfg, workdir: str, minutes: float, *, calib_steps: int = 10,
              steps: int | None = None):
  """Trains for `minutes` of wall time, or exactly `steps` steps when given (then the lr
  schedule is the config's over those steps: recipes of different step costs compare at equal
  steps, their times reported beside)."""
  t0 = time.perf_counter()
  budget = 60.0 * minutes
  if steps:
    with cfg.unlocked():
      cfg.train.steps = steps
  trainer = Trainer(cfg, workdir)
  step = trainer.step
  t_cal = None
  while steps:
    metrics = trainer.train_step(next(trainer.data))
    step += 1
    if step % 250 == 0:
      print(f"step {step}/{steps} {time.perf_counter() - t0:.0f}s "
            f"loss {float(metrics['loss']):.4f}", file=sys.stderr, flush=True)
    if step >= steps:
      jax.block_until_ready(trainer.state.step)
      return trainer, step, time.perf_counter() - t0
  while True:
    trainer.train_step(next(trainer.data))
    step += 1
    if step == 2:  # compiled: time the next calib_steps steps
      jax.block_until_ready(trainer.state.step)
      t_cal = time.perf_counter()
    if step == 2 + calib_steps:
      jax.block_until_ready(trainer.state.step)
      rate = calib_steps / (time.perf_counter() - t_cal)
      left = budget - (time.perf_counter() - t0) - 20.0  # ~ the recompile
      total = max(step + 1, int(step + rate * left))
      with cfg.unlocked():
        cfg.train.steps = total
      trainer.tx = state_lib.make_optimizer(cfg)  # same state shape, the new schedule
      trainer.step_fn = trainer.compile_step()
    if time.perf_counter() - t0 >= budget:  # past the planned steps the lr stays at its end
      break
  jax.block_until_ready(trainer.state.step)
  return trainer, step, time.perf_counter() - t0


TABLE_CHECKS = ("all_right", "color", "shape", "size", "motion", "background", "wall", "no_extra",
                "permanence")


def table(log: str) -> str:
  """The markdown table of a speedrun log (one row per JSON line)."""
  rows = [json.loads(x) for x in pathlib.Path(log).read_text().splitlines() if x.strip()]
  head = "| recipe | min | steps | clips | cfg | " + " | ".join(TABLE_CHECKS) + " |"
  lines = [head, "|" + "---|" * (5 + len(TABLE_CHECKS))]
  fmt = lambda v: "-" if v is None else f"{v:.2f}"
  for r in rows:
    lines.append(f"| {r['name'] or ' '.join(r['overrides'])} | {r['minutes']:g} | {r['steps']} | "
                 f"{r['clips_seen']} | {r['cfg']:g} | "
                 + " | ".join(fmt(r.get(c)) for c in TABLE_CHECKS) + " |")
  return "\n".join(lines)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--config", default="experiments/world.py:world32")
  ap.add_argument("--minutes", type=float, default=10.0)
  ap.add_argument("--steps", type=int, default=0, help="train exactly this many steps instead")
  ap.add_argument("--prompts", type=int, default=128)
  ap.add_argument("--name", default="", help="recipe name for the table")
  ap.add_argument("--keep", default="", help="keep the run (and a final checkpoint) here")
  ap.add_argument("--log", default="runs/speedrun.jsonl")
  ap.add_argument("--sample-steps", type=int)
  ap.add_argument("--cfg", type=float, nargs="*", help="CFG scales to score (default: config's)")
  ap.add_argument("--table", action="store_true", help="print --log as a markdown table and exit")
  args, overrides = ap.parse_known_args(argv)
  if args.table:
    print(table(args.log))
    return
  cfg = config_lib.load_config(args.config, overrides)
  with cfg.unlocked():
    cfg.train.checkpoint_every = 10 ** 9
  tmp = None
  workdir = args.keep
  if not workdir:
    tmp = tempfile.TemporaryDirectory()
    workdir = tmp.name
  trainer, steps, train_s = train_for(cfg, workdir, args.minutes, steps=args.steps)
  val = val_losses(trainer.graphdef, trainer.state.ema, trainer.codec, trainer.tokenizer, cfg)
  if args.keep:
    trainer.save()
    trainer.ckpt.wait()
  pipe = pipeline_of(trainer, steps)
  scales = args.cfg or [cfg.sample.cfg]
  for scale in scales:
    t1 = time.perf_counter()
    rates, results, _, specs, _ = evaluate(pipe, args.prompts, steps=args.sample_steps,
                                           cfg_scale=scale)
    line = {"benchmark": "speedrun", "name": args.name, "config": args.config,
            "overrides": overrides, "steps": steps,
            "minutes": round(train_s / 60, 1) if args.steps else args.minutes,
            "clips_seen": steps * cfg.data.batch_size, "train_s": round(train_s, 1),
            "eval_s": round(time.perf_counter() - t1, 1), "cfg": scale,
            "sample_steps": args.sample_steps or cfg.sample.steps, "prompts": args.prompts,
            **val, "one_object_all_right": one_object_rate(results, specs),
            **{k: (None if v is None else round(v, 4)) for k, v in rates.items()}}
    print(json.dumps(line), flush=True)
    if args.log:
      log = pathlib.Path(args.log)
      log.parent.mkdir(parents=True, exist_ok=True)
      with log.open("a") as f:
        f.write(json.dumps(line) + "\n")
  trainer.close()
  if tmp:
    tmp.cleanup()


if __name__ == "__main__":
  sys.exit(main())
