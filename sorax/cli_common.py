"""What the `sorax` command modules share: the error that becomes exit code 2, the sampler
names, and the safety flags every generating command takes (sorax/cli.py, sorax/cli_verbs.py)."""

from __future__ import annotations

from collections.abc import Sequence

SAMPLER_NAMES = ("euler", "heun", "renoise")  # sorax/diffusion/samplers.py SAMPLERS (tested)
JUDGE_NAMES = ("self", "captioner")  # sorax/sample.py JUDGES (tested)
ETA_HELP = ("renoise's fresh noise: 0 = euler, 1 = DDPM's ancestral sampler, more = fresher, "
            "capped at all of it (default: the checkpoint's sample.eta)")


def check_eta(eta: float | None) -> None:
  if eta is not None and not eta >= 0.0:
    raise CLIError(f"--eta must be >= 0, got {eta}")


class CLIError(Exception):
  """A bad command line or input: printed as one line, exit code 2."""


def add_safety(p):
  p.add_argument("--safety", default=None,
                 help="safety config, experiments/safety.py[:default|strict|off] (the default)")
  p.add_argument("--no-watermark", action="store_true", help="do not watermark outputs")
  p.add_argument("--no-c2pa", action="store_true", help="do not C2PA-sign outputs")


def load_safety(args, overrides: Sequence[str]):
  from sorax.safety.guard import load_safety as load  # noqa: PLC0415
  return load(args.safety, overrides, no_watermark=args.no_watermark, no_c2pa=args.no_c2pa)
