"""Prompt-adherence evaluation with the world's oracle: held-out prompts, scoring a folder of
generated videos against their specs, and the summary table."""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

import numpy as np

from sorax.data import oracle, world
from sorax.data.video_io import read_video

HELDOUT_SEED = 1_000_003  # disjoint from training seeds, which index clips from data.seed


def heldout_specs(n: int, height: int, width: int, frames: int, *, seed: int = HELDOUT_SEED,
                  **spec_kwargs) -> list[world.SceneSpec]:
  rng = np.random.default_rng(seed)
  return [world.random_spec(rng, height, width, frames, **spec_kwargs) for _ in range(n)]


def load_prompt_specs(path: str | pathlib.Path) -> list[tuple[str, world.SceneSpec]]:
  """Reads SPECS.jsonl: one JSON object per line, either a spec ({"background", "wall",
  "objects"}), or {"prompt": str, "spec": {...}}, or {"prompt": terse caption} (parsed)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"prompt/spec file {path} not found")
  out = []
  for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
      if "objects" in obj:
        spec = world.SceneSpec.from_json(obj)
        prompt = world.caption(spec, "terse", np.random.default_rng(0))
      elif "spec" in obj:
        spec, prompt = world.SceneSpec.from_json(obj["spec"]), obj.get("prompt", "")
      elif "prompt" in obj:
        prompt, spec = obj["prompt"], world.parse_terse(obj["prompt"])
      else:
        raise ValueError("expected a spec, {'prompt', 'spec'} or {'prompt'}")
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"{path}, line {i + 1}: {e}") from e
    out.append((prompt, spec))
  return out


def score_folder(videos: str | pathlib.Path, specs_file: str | pathlib.Path) -> dict:
  """Scores <videos>/<i>.mp4 against line i of SPECS.jsonl (0-based, blank lines skipped)."""
  pairs = load_prompt_specs(specs_file)
  folder = pathlib.Path(videos)
  clips, specs, missing = [], [], []
  for i, (_, spec) in enumerate(pairs):
    f = folder / f"{i}.mp4"
    if not f.is_file():
      missing.append(f.name)
      continue
    clips.append(read_video(f))
    specs.append(spec)
  if missing:
    raise FileNotFoundError(f"{len(missing)} videos missing in {folder}: {', '.join(missing[:5])}")
  return oracle.score_videos(clips, specs)


SHORT = {"background": "bg", "permanence": "perm", "no_extra": "extra", "all_right": "ALL"}


def format_table(prompts: Sequence[str], results: Sequence[dict], rates: dict) -> str:
  """A fixed-width table: one row per prompt with its checks, then the rates."""
  checks = [c for c in oracle.CHECKS]
  head = f"{'#':>2}  {'prompt':<58}" + "".join(f"{SHORT.get(c, c):>7}" for c in checks)
  mark = lambda v: "  -" if v is None else ("  ok" if v else "  x")
  lines = [head, "-" * len(head)]
  for i, (p, r) in enumerate(zip(prompts, results)):
    p = p if len(p) <= 58 else p[:55] + "..."
    lines.append(f"{i:>2}  {p:<58}" + "".join(f"{mark(r.get(c)):>7}" for c in checks))
  lines.append("-" * len(head))
  lines.append(f"{'':>2}  {'rate':<58}" + "".join(
      f"{rates.get(c, float('nan')):>7.2f}" for c in checks))
  return "\n".join(lines)
