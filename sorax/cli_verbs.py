"""`sorax animate | extend | fill | interpolate | connect | loop | edit`: read the given image or
video, generate around it (sorax/verbs.py), write through the safety guard (sorax/cli.py
dispatches them and turns their errors into exit codes)."""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Sequence

from sorax.cli_common import (ETA_HELP, SAMPLER_NAMES, CLIError, add_safety, check_eta,
                               load_safety)

# The verbs on given frames (sorax/verbs.py), named here so the parser needs no jax import.
VERB_NAMES = ("animate", "extend", "fill", "interpolate", "connect", "loop", "edit")


def add_parsers(sub) -> None:
  """animate / extend / fill / interpolate / connect / loop / edit: sorax/verbs.py."""
  specs = {
      "animate": ("a clip that starts from a still image", ["image"]),
      "extend": ("extend a video forward or backward in time", ["video"]),
      "fill": ("remake missing frames of a video from both sides", ["video"]),
      "interpolate": ("a clip from a first image to a last one", ["first", "last"]),
      "connect": ("join two videos with frames made to lead from one into the other",
                  ["first", "second"]),
      "loop": ("a clip whose end leads back into its start", []),
      "edit": ("SDEdit a video towards a new prompt", ["video"]),
  }
  for verb, (help_text, inputs) in specs.items():
    p = sub.add_parser(verb, help=help_text)
    for name in inputs:
      p.add_argument(name)
    p.add_argument("--prompt", required=verb not in ("extend", "fill"), default="",
                   help="what the video shows" + (" (optional)" if verb in ("extend", "fill")
                                                  else ""))
    if verb == "extend":
      p.add_argument("--seconds", type=float, required=True, help="how much to add (8 fps)")
      p.add_argument("--direction", choices=["forward", "backward"], default="forward")
    if verb == "fill":
      p.add_argument("--missing", required=True, help="frames A-B to remake (0-based, inclusive)")
    if verb == "edit":
      p.add_argument("--strength", type=float, required=True,
                     help="0 returns the input, 1 ignores it")
    p.add_argument("--checkpoint", default=None,
                   help="a .safetensors weights file or a training workdir (default: shipped)")
    p.add_argument("--out", required=True, help="output folder: <verb>.mp4 goes there")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale")
    p.add_argument("--sampler", choices=SAMPLER_NAMES)
    p.add_argument("--eta", type=float, help=ETA_HELP)
    if verb != "edit":
      p.add_argument("--guide-context", type=float, default=None,
                     help="guidance toward the given frames (0: off; default "
                          "sorax.verbs.VERB_GUIDE_CONTEXT): larger keeps what is made closer "
                          "to them at the joins")
      p.add_argument("--best-of", type=int, default=None,
                     help="draw K candidates for each window and keep the one that joins the "
                          "given frames most smoothly (K x the time; default "
                          "sorax.verbs.VERB_BEST_OF)")
    p.add_argument("--gif", action="store_true", help="also write <verb>.gif")
    add_safety(p)


def _read_image(path: str, height: int, width: int):
  import numpy as np
  from PIL import Image, UnidentifiedImageError
  from sorax import verbs
  f = pathlib.Path(path)
  if not f.is_file():
    raise CLIError(f"image {path} not found")
  try:
    with Image.open(f) as im:
      if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        raise CLIError(f"image {path} has an alpha channel; flatten it to RGB first")
      if im.mode in ("L", "1", "I", "I;16", "F"):
        raise CLIError(f"image {path} has one channel (grayscale); give an RGB image")
      pixels = np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise CLIError(f"image {path} cannot be read: {e}") from e
  return verbs.fit_image(pixels, height, width, name=path)


def _read_clip(path: str, height: int, width: int):
  from sorax import verbs
  from sorax.data import video_io
  fps = video_io.probe(path)["fps"]  # raises VideoReadError naming the file
  if abs(fps - 8.0) > 1e-3:
    print(f"sorax: notice: {path} is {fps:g} fps; resampled to the model's 8 fps",
          file=sys.stderr)
  video = video_io.read_video(path, fps=8)
  return verbs.fit_video(video, height, width, name=path)


def cmd_verb(args, overrides: Sequence[str]) -> int:
  """animate, extend, fill, interpolate, connect, loop, edit: read, generate, write (guarded)."""
  from sorax import verbs
  from sorax.sample import Pipeline, save_videos
  if args.steps is not None and args.steps < 1:
    raise CLIError(f"--steps must be a positive integer, got {args.steps}")
  best_of = getattr(args, "best_of", None)
  if best_of is not None and best_of < 1:
    raise CLIError(f"--best-of must be a positive integer, got {best_of}")
  check_eta(args.eta)
  if getattr(args, "guide_context", None) is not None and args.guide_context < 0:
    raise CLIError(f"--guide-context must be >= 0 (0: off), got {args.guide_context}")
  safety = load_safety(args, overrides)
  safety.check_prompts([args.prompt])  # before loading or reading anything
  pipe = Pipeline.load(args.checkpoint)
  pipe.policy = safety.policy
  h, w = int(pipe.cfg.data.height), int(pipe.cfg.data.width)
  kw = dict(seed=args.seed, steps=args.steps, cfg_scale=args.cfg, sampler=args.sampler,
            eta=args.eta)
  if args.verb != "edit":
    kw["best_of"] = verbs.VERB_BEST_OF if best_of is None else best_of
    kw["guide_context"] = args.guide_context
  t0 = time.perf_counter()
  verb = args.verb
  if verb == "animate":
    video = verbs.animate(pipe, _read_image(args.image, h, w), args.prompt, **kw)
  elif verb == "extend":
    video = verbs.extend(pipe, _read_clip(args.video, h, w), args.seconds, args.direction,
                         args.prompt, **kw)
  elif verb == "fill":
    clip = _read_clip(args.video, h, w)
    video = verbs.fill(pipe, clip, verbs.parse_range(args.missing, len(clip)), args.prompt, **kw)
  elif verb == "interpolate":
    video = verbs.interpolate(pipe, _read_image(args.first, h, w), _read_image(args.last, h, w),
                              args.prompt, **kw)
  elif verb == "connect":
    video = verbs.connect(pipe, _read_clip(args.first, h, w), _read_clip(args.second, h, w),
                          args.prompt, **kw)
  elif verb == "loop":
    video = verbs.loop(pipe, args.prompt, **kw)
  else:  # edit checks the strength (ValueError: one line, exit 2)
    video = verbs.edit(pipe, _read_clip(args.video, h, w), args.prompt, args.strength, **kw)
  files = save_videos(video[None], [verb], pathlib.Path(args.out), safety=safety,
                      prompts=[args.prompt], pipe=pipe, gif=args.gif)
  print(json.dumps({"videos": files, "frames": int(len(video)),
                    "seconds": round(time.perf_counter() - t0, 2), "checkpoint_step": pipe.step,
                    "watermark": safety.watermark is not None,
                    "c2pa": safety.signing is not None}))
  return 0
