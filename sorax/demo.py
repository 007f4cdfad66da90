"""`sorax demo`: sample held-out world prompts from the shipped checkpoint
(sorax/assets/world32.safetensors), write watermarked and signed mp4 + gif and a contact sheet,
score them with the oracle and print the table.

`sorax demo --from-scratch` runs the whole path instead, small, on CPU: encode world clips with
the shipped VAE once, train the DiT on their latents, then sample and score as above.

The latent cache (`cache_clips` clips, in <workdir>/latents) halves the demo's time on two
cores: encoding every batch through the VAE costs as much as the DiT step itself.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time

import sorax
from sorax import config as config_lib

DEMO_CONFIG = pathlib.Path(sorax.__file__).resolve().parent.parent / "experiments" / "world.py"


def run_demo(*, workdir: str = "runs/demo", out: str = "demo_out", steps: int | None = None,
             num_prompts: int = 8, fresh: bool = False, safety=None,
             overrides: tuple[str, ...] = (), cache_clips: int = 4000,
             from_scratch: bool = False, checkpoint: str | None = None) -> int:
  """Samples from `checkpoint` (default: the shipped one) unless `from_scratch`, which trains
  the demo config first. `overrides`: --config.key=value strings for the demo config (tests
  shrink it). `cache_clips` = 0: no latent cache (encode every batch)."""
  from sorax.evaluate import evaluate_checkpoint

  t0 = time.perf_counter()
  if not from_scratch:
    print(f"[demo] sampling {num_prompts} held-out prompts from "
          f"{checkpoint or 'the shipped checkpoint'}", flush=True)
    return _report(evaluate_checkpoint(checkpoint, out, num_prompts=num_prompts, safety=safety),
                   out, t0)

  from sorax.train.trainer import Trainer
  if not DEMO_CONFIG.is_file():
    raise FileNotFoundError(f"--from-scratch trains {DEMO_CONFIG}, which an installed sorax "
                            "does not carry: run it from a checkout of the repository")
  if fresh and pathlib.Path(workdir).exists():
    shutil.rmtree(workdir)
  cfg = config_lib.load_config(f"{DEMO_CONFIG}:demo", overrides)
  if cache_clips and cfg.codec.name == "vae" and not cfg.data.latent_cache:
    cache = _latent_cache(cfg, pathlib.Path(workdir) / "latents", cache_clips)
    cfg = config_lib.load_config(f"{DEMO_CONFIG}:demo",
                                 [*overrides, f"--config.data.latent_cache={cache}"])
  trainer = Trainer(cfg, workdir)
  total = cfg.train.steps if steps is None else steps
  print(f"[demo] training {total} steps on {cfg.data.height}x{cfg.data.width}x"
        f"{cfg.data.frames} world clips (resumes from {workdir} if present)", flush=True)
  metrics = trainer.fit(total)
  trainer.close()
  t_train = time.perf_counter() - t0
  print(f"[demo] sampling {num_prompts} held-out prompts", flush=True)
  return _report(evaluate_checkpoint(workdir, out, num_prompts=num_prompts, safety=safety),
                 out, t0, final_loss=metrics.get("loss"), train_seconds=round(t_train, 1))


def _report(result: dict, out: str, t0: float, **extra) -> int:
  """Prints the table and the summary (also written to <out>/scores.json)."""
  print(result.pop("table"))
  summary = {**result, **extra, "total_seconds": round(time.perf_counter() - t0, 1)}
  (pathlib.Path(out) / "scores.json").write_text(json.dumps(summary, indent=2))
  print(json.dumps(summary))
  return 0


def _latent_cache(cfg, path: pathlib.Path, num_clips: int) -> str:
  """Encodes world clips with the config's codec into `path` once (kept for reruns)."""
  from sorax.train.trainer import cache_latents
  if not (path / "cache.json").exists():
    print(f"[demo] encoding {num_clips} world clips with the VAE into {path}", flush=True)
    cache_latents(cfg, path, num_clips)
  return str(path)
