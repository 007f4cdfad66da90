"""The `sorax` command.

  sorax demo [--from-scratch]                  sample + score the shipped model (or train one first)
  sorax train --config experiments/world.py:demo --workdir runs/x [--config.key=value ...]
  sorax sample [--checkpoint runs/x|F.safetensors] (--prompt TEXT | --prompts FILE) --out DIR
  sorax score --videos DIR --prompts SPECS.jsonl
  sorax eval --checkpoint runs/x --out DIR [--num-prompts 64]   held-out prompts, sampled + scored
  sorax cache-latents --config experiments/world.py:demo --out DIR [--num-clips N]
                                               encode world clips once (then train with
                                               --config.data.latent_cache=DIR)
  sorax eval-vae [--checkpoint runs/vae] --out DIR     reconstruction PSNR + oracle on recons
  sorax export-vae [--checkpoint runs/vae] --out vae.msgpack|vae.safetensors   one VAE file
  sorax export [--checkpoint runs/x|F] --out model.safetensors [--format safetensors|orbax|stablehlo]
                                               EMA weights, per-layer names (docs/export_layout.md)
  sorax animate IMAGE --prompt TEXT --out DIR   a clip that starts from a still image
  sorax extend VIDEO --seconds N [--direction forward|backward] [--prompt TEXT] --out DIR
  sorax fill VIDEO --missing A-B [--prompt TEXT] --out DIR          remake frames A..B (0-based)
  sorax interpolate FIRST.png LAST.png --prompt TEXT --out DIR      a clip from one to the other
  sorax connect A.mp4 B.mp4 --prompt TEXT --out DIR                 A, a bridge, then B
  sorax loop --prompt TEXT --out DIR                                 a clip that plays on repeat
  sorax edit VIDEO --prompt TEXT --strength S --out DIR              SDEdit (0: input, 1: new)
  sorax keys create [--dir DIR]                a self-signed C2PA test chain for local signing
  sorax detect FILE [FILE ...]                 C2PA manifest + watermark -> JSON verdict
  sorax policy PROMPT [PROMPT ...] | --file F  one JSON policy decision per prompt (no generation)
  sorax build-tokenizer [--out PATH]
  sorax plan --config C --devices N --memory-gb G [--frames T --height H --width W --batch B]
                                               per-device peak memory per mesh x remat, compiled

Every generation verb (sample, eval, demo and the verbs on given frames above) checks prompts against the content policy, then
watermarks and C2PA-signs every file it writes (experiments/safety.py; --safety.key=value
overrides; --no-watermark / --no-c2pa turn those off, and the command says so).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Sequence

from sorax import cli_import, cli_plan, cli_safety, cli_verbs
from sorax.cli_common import (ETA_HELP, JUDGE_NAMES, SAMPLER_NAMES, CLIError, add_safety,
                               check_eta, load_safety)
from sorax.cli_verbs import VERB_NAMES


def _add_train(sub):
  p = sub.add_parser("train", help="train a model from an experiment config")
  p.add_argument("--config", required=True, help="experiments/FILE.py[:arg]")
  p.add_argument("--workdir", required=True, help="checkpoints, metrics and config go here")
  p.add_argument("--no-progress", action="store_true")
  p.add_argument("--coordinator", default=None, help="multi-host: HOST:PORT of process 0 "
                 "(TPU VMs and SLURM are found without it; sorax/parallel/distributed.py)")
  p.add_argument("--num-processes", type=int, default=None)
  p.add_argument("--process-id", type=int, default=None)


def _add_sample(sub):
  p = sub.add_parser("sample", help="generate videos from text with a checkpoint")
  p.add_argument("--checkpoint", default=None,
                 help="a .safetensors weights file or a training workdir (default: the shipped "
                      "world checkpoint)")
  g = p.add_mutually_exclusive_group(required=True)
  g.add_argument("--prompt", help="one prompt")
  g.add_argument("--prompts", help="a text file, one prompt per line -> <line index>.mp4")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--frames", type=int)
  p.add_argument("--height", type=int)
  p.add_argument("--width", type=int)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--steps", type=int)
  p.add_argument("--cfg", type=float, help="classifier-free guidance scale")
  p.add_argument("--sampler", choices=SAMPLER_NAMES)
  p.add_argument("--eta", type=float, help=ETA_HELP)
  p.add_argument("--best-of", type=int, default=None,
                 help="draw K samples a prompt and keep the one --judge picks "
                      "(K x the time; default: the checkpoint's sample.best_of)")
  p.add_argument("--judge", choices=JUDGE_NAMES, default=None,
                 help="who picks among --best-of K: the DiT itself ('self') or the learned "
                      "world captioner ('captioner'; default: the checkpoint's sample.judge)")
  p.add_argument("--best-of-stop", type=float, default=None,
                 help="with the captioner judging, a prompt stops drawing once the kept "
                      "sample's log p reaches this (after 4 candidates; default: the "
                      "checkpoint's sample.best_of_stop, none: all K)")
  p.add_argument("--batch-size", type=int, default=8)
  p.add_argument("--gif", action="store_true", help="also write <i>.gif")
  p.add_argument("--png", action="store_true", help="also write <i>.png (the first frame)")
  add_safety(p)


def _add_score(sub):
  p = sub.add_parser("score", help="score <i>.mp4 videos against specs with the world oracle")
  p.add_argument("--videos", required=True)
  p.add_argument("--prompts", required=True, help="SPECS.jsonl, one spec (or prompt) per line")


def _add_demo(sub):
  p = sub.add_parser("demo", help="sample and score the shipped world model (or --from-scratch: "
                     "train a tiny one first)")
  p.add_argument("--from-scratch", action="store_true",
                 help="train the demo config on CPU first (minutes), then sample it")
  p.add_argument("--checkpoint", default=None,
                 help="sample this weights file or workdir instead of the shipped checkpoint")
  p.add_argument("--workdir", default="runs/demo", help="--from-scratch: the training run")
  p.add_argument("--out", default="demo_out")
  p.add_argument("--steps", type=int, help="training steps (default: the demo config's)")
  p.add_argument("--num-prompts", type=int, default=8)
  p.add_argument("--fresh", action="store_true", help="delete the workdir first")
  p.add_argument("--cache-clips", type=int, default=4000,
                 help="world clips to encode once and train on (0: encode every batch)")
  add_safety(p)


def _add_eval(sub):
  p = sub.add_parser("eval", help="sample held-out world prompts with a checkpoint and score them")
  p.add_argument("--checkpoint", default=None,
                 help="a .safetensors weights file or a training workdir (default: the shipped one)")
  p.add_argument("--out", required=True)
  p.add_argument("--num-prompts", type=int, default=64)
  p.add_argument("--steps", type=int)
  p.add_argument("--cfg", type=float)
  p.add_argument("--best-of", type=int, default=None,
                 help="K samples a prompt, --judge's pick kept (default: the checkpoint's)")
  p.add_argument("--judge", choices=JUDGE_NAMES, default=None,
                 help="who picks among --best-of K (default: the checkpoint's sample.judge)")
  p.add_argument("--seed", type=int)
  add_safety(p)


def _add_vae(sub):
  p = sub.add_parser("eval-vae", help="reconstruction PSNR and oracle rates of a VAE on the world")
  p.add_argument("--checkpoint", default="",
                 help="a VAE training workdir or .msgpack file (default: the shipped world VAE)")
  p.add_argument("--out", default=None, help="writes recon.png and scores.json here")
  p.add_argument("--num-clips", type=int, default=64)
  p.add_argument("--height", type=int, default=64)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--frames", type=int, default=17)
  p = sub.add_parser("export-vae", help="write a VAE's EMA weights to one .msgpack file (or "
                     ".safetensors: per-parameter names, what the PyTorch reference reads)")
  p.add_argument("--checkpoint", default="",
                 help="a VAE training workdir or VAE file (default: the shipped world VAE)")
  p.add_argument("--out", required=True, help="vae.msgpack or vae.safetensors")
  p.add_argument("--dtype", default="float32", choices=["float32", "float16"])


def _add_export(sub):
  p = sub.add_parser("export", help="write a checkpoint's EMA weights to a weights-only file "
                     "(per-layer tensor names, docs/export_layout.md) or a serving export")
  p.add_argument("--checkpoint", default=None,
                 help="a training workdir, a .safetensors file or an Orbax export directory "
                      "(default: the shipped checkpoint)")
  p.add_argument("--format", default="safetensors", choices=["safetensors", "orbax", "stablehlo"],
                 help="safetensors: one file; orbax: a directory; stablehlo: a serving zip "
                      "(jax.export of encode_text, denoise, decode; symbolic batch)")
  p.add_argument("--out", required=True)
  p.add_argument("--dtype", default=None, choices=["float16", "bfloat16", "float32"],
                 help="weights dtype (default float16; float32 for stablehlo)")
  for name in ("frames", "height", "width"):
    p.add_argument(f"--{name}", type=int, default=None,
                   help=f"stablehlo: the canvas {name} (default: the run config's)")
  p.add_argument("--platforms", default=None,
                 help="stablehlo: comma-separated platforms to lower for (default cpu,cuda,tpu)")


def _add_cache(sub):
  p = sub.add_parser("cache-latents", help="encode world clips with the config's codec into an "
                     "ArrayRecord latent cache")
  p.add_argument("--config", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--num-clips", type=int, default=10_000)
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--overwrite", action="store_true")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="sorax", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="verb", required=True)
  _add_demo(sub)
  _add_train(sub)
  _add_sample(sub)
  cli_verbs.add_parsers(sub)
  _add_score(sub)
  _add_eval(sub)
  _add_vae(sub)
  _add_cache(sub)
  _add_export(sub)
  cli_safety.add_parsers(sub)
  cli_import.add_parsers(sub)
  cli_plan.add_parsers(sub)
  p = sub.add_parser("build-tokenizer", help="retrain the shipped world tokenizer")
  p.add_argument("--out", default=None)
  return parser


def _read_prompts(path: str) -> list[tuple[int, str]]:
  f = pathlib.Path(path)
  if not f.is_file():
    raise CLIError(f"prompts file {path} not found")
  try:
    lines = f.read_text(encoding="utf-8").splitlines()
  except UnicodeDecodeError as e:
    raise CLIError(f"prompts file {path} is not UTF-8 text: {e}") from e
  prompts = [(i, line.strip()) for i, line in enumerate(lines) if line.strip()]
  if not prompts:
    raise CLIError(f"prompts file {path} has no prompts (one per line expected)")
  return prompts


def cmd_train(args, overrides: Sequence[str]) -> int:
  from sorax import config as config_lib
  from sorax.parallel import distributed
  from sorax.train.trainer import train
  cfg = config_lib.load_config(args.config, overrides)  # bad config: an error before any start
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  metrics, preempted = train(cfg, args.workdir, progress=not args.no_progress)
  print(json.dumps({"workdir": args.workdir, "preempted": preempted, **metrics}))
  return 0


def cmd_sample(args, overrides: Sequence[str]) -> int:
  from sorax.sample import Pipeline, save_videos
  prompts = [(0, args.prompt)] if args.prompt is not None else _read_prompts(args.prompts)
  for name, value in (("frames", args.frames), ("height", args.height), ("width", args.width),
                      ("steps", args.steps), ("best-of", args.best_of)):
    if value is not None and value < 1:
      raise CLIError(f"--{name} must be a positive integer, got {value}")
  check_eta(args.eta)
  safety = load_safety(args, overrides)
  safety.check_prompts([p for _, p in prompts])  # before loading anything
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = safety.policy
  t0 = time.perf_counter()
  report: dict = {}
  videos = pipe.generate([p for _, p in prompts], frames=args.frames, height=args.height,
                         width=args.width, steps=args.steps, cfg_scale=args.cfg,
                         sampler=args.sampler, eta=args.eta, seed=args.seed,
                         batch_size=args.batch_size, best_of=args.best_of, judge=args.judge,
                         best_of_stop=args.best_of_stop, report=report)
  files = save_videos(videos, [str(i) for i, _ in prompts], pathlib.Path(args.out),
                      safety=safety, prompts=[p for _, p in prompts], pipe=pipe, gif=args.gif,
                      png=args.png)
  print(json.dumps({"videos": files, "seconds": round(time.perf_counter() - t0, 2),
                    "samples_drawn": int(report["draws"].sum()), "checkpoint_step": pipe.step, "watermark": safety.watermark is not None,
                    "c2pa": safety.signing is not None}))
  return 0


def cmd_score(args) -> int:
  from sorax.evaluate import score_folder
  print(json.dumps(score_folder(args.videos, args.prompts), sort_keys=True))
  return 0


def cmd_eval(args, overrides: Sequence[str]) -> int:
  from sorax.evaluate import evaluate_checkpoint
  if args.num_prompts < 1:
    raise CLIError(f"--num-prompts must be a positive integer, got {args.num_prompts}")
  if args.best_of is not None and args.best_of < 1:
    raise CLIError(f"--best-of must be a positive integer, got {args.best_of}")
  result = evaluate_checkpoint(args.checkpoint, args.out, num_prompts=args.num_prompts,
                               seed=args.seed, steps=args.steps, cfg_scale=args.cfg,
                               best_of=args.best_of, judge=args.judge,
                               safety=load_safety(args, overrides))
  print(result.pop("table"))
  print(json.dumps(result))
  return 0


def cmd_cache_latents(args, overrides: Sequence[str]) -> int:
  from sorax import config as config_lib
  from sorax.train.trainer import cache_latents
  if args.num_clips < 1:
    raise CLIError(f"--num-clips must be a positive integer, got {args.num_clips}")
  cfg = config_lib.load_config(args.config, overrides)
  manifest = cache_latents(cfg, args.out, args.num_clips, batch_size=args.batch_size,
                           overwrite=args.overwrite)
  print(json.dumps({"cache": args.out, "count": manifest["count"],
                    "latent_shape": manifest["latent_shape"]}))
  return 0


def cmd_eval_vae(args) -> int:
  from sorax.vae_eval import evaluate_vae
  for name in ("num_clips", "height", "width", "frames"):
    if getattr(args, name) < 1:
      raise CLIError(f"--{name.replace('_', '-')} must be a positive integer")
  print(json.dumps(evaluate_vae(args.checkpoint, num_clips=args.num_clips, height=args.height,
                                width=args.width, frames=args.frames, out=args.out)))
  return 0


def cmd_export_vae(args) -> int:
  from sorax.models.vae_codec import load_vae, save_vae
  codec = load_vae(args.checkpoint)
  save_vae(args.out, codec.cfg, codec.params, dtype=args.dtype)
  print(json.dumps({"vae": args.out, "from": codec.source}))
  return 0


def cmd_export(args) -> int:
  from sorax.sample import Pipeline
  canvas = {k: getattr(args, k) for k in ("frames", "height", "width")}
  if args.format != "stablehlo" and (any(v is not None for v in canvas.values())
                                     or args.platforms is not None):
    raise CLIError("--frames/--height/--width/--platforms are for --format stablehlo only")
  if any(v is not None and v < 1 for v in canvas.values()):
    raise CLIError("--frames/--height/--width must be positive integers")
  if args.checkpoint is not None and not pathlib.Path(args.checkpoint).exists():
    raise CLIError(f"checkpoint {args.checkpoint} not found")
  if args.format == "stablehlo":
    from sorax.export.serving import PLATFORMS
    platforms = tuple(args.platforms.split(",")) if args.platforms else PLATFORMS
    if not platforms or set(platforms) - set(PLATFORMS):
      raise CLIError(f"--platforms {args.platforms}: choose from {','.join(PLATFORMS)}")
  pipe = Pipeline.load(args.checkpoint)
  if args.format == "stablehlo":
    from sorax.export.serving import export_pipeline
    dtype = args.dtype or "float32"
    out = export_pipeline(pipe, args.out, dtype=dtype, platforms=platforms, **canvas)
    info = {"serving": str(out)}
  else:
    dtype = args.dtype or "float16"
    out = pipe.save_weights(args.out, dtype=dtype, layout="per_layer", format=args.format)
    info = {"weights": str(out)}
  size = (out.stat().st_size if out.is_file() else
          sum(f.stat().st_size for f in out.rglob("*") if f.is_file()))
  print(json.dumps({**info, "format": args.format, "step": pipe.step, "dtype": dtype,
                    "bytes": size}))
  return 0


def cmd_demo(args, overrides: Sequence[str]) -> int:
  from sorax.demo import run_demo
  if args.cache_clips < 0:
    raise CLIError(f"--cache-clips must be >= 0, got {args.cache_clips}")
  return run_demo(workdir=args.workdir, out=args.out, steps=args.steps,
                  num_prompts=args.num_prompts, fresh=args.fresh, cache_clips=args.cache_clips,
                  safety=load_safety(args, overrides), from_scratch=args.from_scratch,
                  checkpoint=args.checkpoint)


def cmd_build_tokenizer(args) -> int:
  from sorax.models.text import DEFAULT_TOKENIZER, train_tokenizer
  print(train_tokenizer(args.out or DEFAULT_TOKENIZER))
  return 0


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  prefix = {"train": "--config.", "cache-latents": "--config.", "plan": "--config.",
            "sample": "--safety.", "eval": "--safety.", "demo": "--safety.", "detect": "--safety.",
            "policy": "--safety.", **{v: "--safety." for v in VERB_NAMES}}.get(args.verb)
  overrides = [a for a in extra if prefix and a.startswith(prefix)]
  unknown = [a for a in extra if a not in overrides]
  if unknown:
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")
  from sorax.config import ConfigError
  from sorax.data.video_io import VideoReadError
  from sorax.models.vae_codec import VAELoadError
  from sorax.safety.policy import PolicyViolation
  from sorax.safety.provenance import ProvenanceError
  from sorax.models.weights import WeightsError
  from sorax.export.serving import ServingError
  from sorax.train.checkpoint import CheckpointError
  with_overrides = {"train": cmd_train, "cache-latents": cmd_cache_latents, "sample": cmd_sample,
                    "eval": cmd_eval, "demo": cmd_demo, "detect": cli_safety.cmd_detect,
                    "policy": cli_safety.cmd_policy, "plan": cli_plan.cmd_plan,
                    **{v: cli_verbs.cmd_verb for v in VERB_NAMES}}
  plain = {"score": cmd_score, "build-tokenizer": cmd_build_tokenizer, "eval-vae": cmd_eval_vae,
           "export-vae": cmd_export_vae, "export": cmd_export, "keys": cli_safety.cmd_keys,
           "import-wan": cli_import.cmd_import_wan}
  try:
    if args.verb in with_overrides:
      return with_overrides[args.verb](args, overrides)
    return plain[args.verb](args)
  except PolicyViolation as e:
    print(f"sorax {args.verb}: refused: {e}", file=sys.stderr)
    return 3
  except (CLIError, ConfigError, CheckpointError, WeightsError, VideoReadError, VAELoadError, ProvenanceError,
          ServingError,
          FileNotFoundError, FileExistsError, ValueError) as e:
    print(f"sorax {args.verb}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
