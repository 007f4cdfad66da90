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
  return json_safe(oracle.score_videos(clips, specs))


def json_safe(rates: dict) -> dict:
  """NaN rates (a check that applied to no clip) -> None, so the output is strict JSON."""
  return {k: (None if isinstance(v, float) and v != v else v) for k, v in rates.items()}


def motion_confusion(videos: Sequence[np.ndarray], specs: Sequence) -> dict[str, dict]:
  """Per motion a prompt asks for: how often each object's motion reads right, and what the
  oracle reads instead ("unreadable": no trajectory fits any motion, e.g. a jump or a drift;
  "missing": the object's colour is not there).

  -> {asked: {"n": objects, "rate": right share, "read": {read motion: count}}}."""
  if len(videos) != len(specs):
    raise ValueError(f"{len(videos)} videos but {len(specs)} specs")
  out: dict[str, dict] = {}
  for video, spec in zip(videos, specs):
    spec = oracle.as_spec(spec)
    for o, r in zip(spec.objects, oracle.explain_video(np.asarray(video), spec)["objects"]):
      read = r["motion"] if r["color"] else "missing"
      row = out.setdefault(o.motion, {"n": 0, "rate": 0.0, "read": {}})
      row["n"] += 1
      row["rate"] += float(r["motion_ok"])
      key = "unreadable" if read is None else read
      row["read"][key] = row["read"].get(key, 0) + 1
  for row in out.values():
    row["rate"] = round(row["rate"] / row["n"], 4)
    row["read"] = dict(sorted(row["read"].items(), key=lambda kv: -kv[1]))
  return dict(sorted(out.items()))


def evaluate_checkpoint(checkpoint: str | pathlib.Path | None, out: str | pathlib.Path, *,
                        num_prompts: int = 8, seed: int | None = None, steps: int | None = None,
                        cfg_scale: float | None = None, gif: bool = True, safety=None,
                        sheet: bool = True, best_of: int | None = None,
                        judge: str | None = None) -> dict:
  """Samples `num_prompts` held-out terse prompts at the training clip size, writes
  <out>/<i>.mp4 (+ .gif), prompts.jsonl (for `sorax score`), scores.json and (`sheet`)
  contact_sheet.png, a signed PNG of every video's frames under its prompt and verdict.
  `checkpoint`: a workdir, a .safetensors file, or None for the shipped checkpoint.
  Files go out through `safety` (default: experiments/safety.py, watermark and C2PA on); the
  oracle scores the written mp4s, i.e. what a user gets. -> {"all_right", "rates", "table", ...}."""
  from sorax.data.video_io import read_video
  from sorax.safety.guard import load_safety
  from sorax.sample import Pipeline, save_videos

  safety = load_safety() if safety is None else safety

  pipe = Pipeline.load(checkpoint)
  d = pipe.cfg.data
  specs = heldout_specs(num_prompts, d.height, d.width, d.frames, max_objects=d.max_objects,
                        wall_prob=d.wall_prob)
  rng = np.random.default_rng(0)
  prompts = [world.caption(s, "terse", rng) for s in specs]
  safety.check_prompts(prompts)
  report: dict = {}
  videos = pipe.generate(prompts, seed=pipe.cfg.sample.seed if seed is None else seed,
                         steps=steps, cfg_scale=cfg_scale, best_of=best_of, judge=judge,
                         report=report)
  out_dir = pathlib.Path(out)
  files = save_videos(videos, [str(i) for i in range(len(videos))], out_dir, safety=safety,
                      prompts=prompts, pipe=pipe, gif=gif)
  videos = np.stack([read_video(f) for f in files])
  with open(out_dir / "prompts.jsonl", "w", encoding="utf-8") as f:
    for p, s in zip(prompts, specs):
      f.write(json.dumps({"prompt": p, "spec": s.to_json()}) + "\n")
  results = [oracle.score_video(v, s) for v, s in zip(videos, specs)]
  rates = json_safe(oracle.score_videos(list(videos), specs))
  summary = {"checkpoint": str(checkpoint or "shipped"), "train_steps": pipe.step,
             "all_right": rates["all_right"], "rates": rates, "videos": str(out_dir),
             "samples_drawn": int(report["draws"].sum())}
  if sheet:
    from sorax.contact_sheet import contact_sheet
    image = contact_sheet(videos, prompts, notes=[verdict(r) for r in results])
    summary["contact_sheet"] = safety.write_image(image, "contact_sheet", out_dir,
                                                  model=f"sorax-dit@{pipe.step}",
                                                  config=pipe.cfg.to_dict())
  (out_dir / "scores.json").write_text(json.dumps(summary, indent=2))
  return {**summary, "table": format_table(prompts, results, rates)}


def verdict(result: dict) -> str:
  """One line of an oracle result: "all right" or the checks that failed."""
  if result.get("all_right"):
    return "oracle: all right"
  failed = [c for c in oracle.CHECKS if c != "all_right" and result.get(c) is False]
  return "oracle: wrong " + ", ".join(failed)


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
  fmt = lambda v: "     -" if v is None or v != v else f"{v:.2f}"
  lines.append(f"{'':>2}  {'rate':<58}" + "".join(f"{fmt(rates.get(c)):>7}" for c in checks))
  return "\n".join(lines)
