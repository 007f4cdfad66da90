"""DiT training from a latent cache, and through the learned VAE codec."""

import json

import jax
import numpy as np
import pytest

from sorax import cli
from sorax.config import load_config
from sorax.train.trainer import Trainer

TINY = ["--config.codec.name=space_to_depth",  # pixel latents: no trained weights
        "--config.model.width=32", "--config.model.depth=1", "--config.model.heads=2",
        "--config.model.text_width=32", "--config.model.text_depth=1",
        "--config.model.text_heads=2", "--config.data.batch_size=8", "--config.data.text_len=16",
        "--config.train.steps=2", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
        "--config.train.async_checkpoint=False"]


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_cache_latents_then_train_from_cache(tmp_path, capsys):
  cache = tmp_path / "cache"
  assert cli.main(["cache-latents", "--config", "experiments/world.py:demo", "--out", str(cache),
                   "--num-clips", "16", *TINY]) == 0
  out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert out["count"] == 16 and out["latent_shape"] == [9, 8, 8, 48]
  # Refuses to overwrite without --overwrite: one line, exit 2, cache intact.
  assert cli.main(["cache-latents", "--config", "experiments/world.py:demo", "--out", str(cache),
                   "--num-clips", "4", *TINY]) == 2
  assert "cache" in capsys.readouterr().err
  wd = tmp_path / "run"
  assert cli.main(["train", "--config", "experiments/world.py:demo", "--workdir", str(wd),
                   "--no-progress", f"--config.data.latent_cache={cache}", *TINY]) == 0
  rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)


def test_cache_from_another_codec_is_refused(tmp_path, capsys):
  cache = tmp_path / "cache"
  assert cli.main(["cache-latents", "--config", "experiments/world.py:demo", "--out", str(cache),
                   "--num-clips", "8", *TINY]) == 0
  cfg = load_config("experiments/world.py:demo", [*TINY, "--config.codec.scale=2.0",
                                                  f"--config.data.latent_cache={cache}"])
  with pytest.raises(ValueError, match="encoded with codec"):
    Trainer(cfg, tmp_path / "run")
  cfg = load_config("experiments/world.py:demo", [*TINY, "--config.data.frames=16",
                                                  f"--config.data.latent_cache={cache}"])
  with pytest.raises(ValueError, match="holds latents"):
    Trainer(cfg, tmp_path / "run2")


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
  wd = tmp_path_factory.mktemp("vae")
  assert cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir", str(wd),
                   "--no-progress", "--config.train.steps=2"]) == 0
  f = wd / "vae.msgpack"
  assert cli.main(["export-vae", "--checkpoint", str(wd), "--out", str(f)]) == 0
  return f


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_dit_on_vae_latents_stores_stats_and_samples(tiny_vae, tmp_path):
  from sorax.sample import Pipeline
  over = [*TINY, "--config.codec.name=vae", f"--config.codec.checkpoint={tiny_vae}",
          "--config.codec.stats_clips=16", "--config.data.height=16", "--config.data.width=16",
          "--config.data.frames=5", "--config.model.patch=[1,1,1]"]
  cfg = load_config("experiments/world.py:demo", over)
  trainer = Trainer(cfg, tmp_path / "run")
  stats = trainer.latent_stats
  assert len(stats["mean"]) == 4 and min(stats["std"]) > 0
  trainer.fit(progress=False)
  trainer.close()
  # Resuming reads the stats from the checkpoint instead of measuring them again.
  again = Trainer(cfg, tmp_path / "run")
  assert again.latent_stats == stats
  again.close()
  pipe = Pipeline.load(tmp_path / "run")
  assert pipe.latent_stats == stats and pipe.codec.mean == tuple(stats["mean"])
  video = pipe.generate(["red circle"], steps=2, frames=4)
  assert video.shape == (1, 4, 16, 16, 3) and video.dtype == np.uint8
  assert jax.device_count() == 8  # the sharded path (8 simulated devices) was exercised
