"""VAE training through the CLI, its evaluation, VAE files and the VAE codec."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax import cli
from sorax.models import vae_codec
from sorax.train.vae_step import psnr, random_crop


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("vae")
  assert cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir",
                   str(workdir), "--no-progress"]) == 0
  return workdir


def test_vae_trains_checkpoints_and_resumes(vae_run, capsys):
  rows = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows] == [2, 4]
  assert all(np.isfinite(r["loss"]) and r["psnr"] > 0 for r in rows)
  # Asking for more steps resumes from step 4 (not from scratch).
  assert cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir",
                   str(vae_run), "--no-progress", "--config.train.steps=6"]) == 0
  rows = [json.loads(line) for line in (vae_run / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows][-1] == 6 and [r["step"] for r in rows].count(2) == 1


def test_eval_vae_and_export(vae_run, tmp_path, capsys):
  out = tmp_path / "eval"
  assert cli.main(["eval-vae", "--checkpoint", str(vae_run), "--out", str(out), "--num-clips",
                   "2", "--height", "16", "--width", "16", "--frames", "5"]) == 0
  res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert 0 < res["psnr"] < 100 and res["oracle_truth"]["all_right"] == 1.0
  assert res["chunked_max_diff"] < 1e-3
  assert (out / "recon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  f = tmp_path / "vae.msgpack"
  assert cli.main(["export-vae", "--checkpoint", str(vae_run), "--out", str(f)]) == 0
  a, b = vae_codec.load_vae(str(vae_run)), vae_codec.load_vae(str(f))
  assert a.cfg == b.cfg
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)
  h = tmp_path / "vae16.msgpack"
  assert cli.main(["export-vae", "--checkpoint", str(vae_run), "--out", str(h), "--dtype",
                   "float16"]) == 0
  assert h.stat().st_size < 0.6 * f.stat().st_size
  c = vae_codec.load_vae(str(h))
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(c.params))
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(c.params)):
    np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)
  video = jax.random.uniform(jax.random.key(0), (1, 4, 16, 16, 3), minval=-1, maxval=1)
  z = b.encode(video)
  assert z.shape == (1, *b.latent_shape(4, 16, 16))  # 4 frames pad to 5 -> 3 latent frames
  assert b.decode(z).shape == (1, 5, 16, 16, 3)


def test_latent_stats_normalize(vae_run):
  codec = vae_codec.load_vae(str(vae_run))
  videos = [np.random.default_rng(i).integers(0, 256, (2, 5, 16, 16, 3), np.uint8)
            for i in range(3)]
  stats = vae_codec.latent_stats(codec, videos)
  normed = codec.with_stats(stats["mean"], stats["std"])
  z = np.concatenate([np.asarray(normed.encode(jnp.asarray(v, jnp.float32) / 127.5 - 1))
                      for v in videos]).reshape(-1, codec.channels)
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-3)
  np.testing.assert_allclose(z.std(0), 1, atol=1e-3)
  # Normalization is undone by decode: same pixels as the unnormalized codec.
  v = jnp.asarray(videos[0], jnp.float32) / 127.5 - 1
  np.testing.assert_allclose(normed.decode(normed.encode(v)), codec.decode(codec.encode(v)),
                             atol=1e-4)
  with pytest.raises(ValueError, match="positive stds"):
    codec.with_stats(stats["mean"], [0.0] * codec.channels)


def test_vae_load_errors(tmp_path, capsys):
  with pytest.raises(vae_codec.VAELoadError, match="not found"):
    vae_codec.load_vae(str(tmp_path / "nope.msgpack"))
  bad = tmp_path / "bad.msgpack"
  bad.write_bytes(b"not msgpack at all")
  with pytest.raises(vae_codec.VAELoadError, match="not a sorax VAE file"):
    vae_codec.load_vae(str(bad))
  assert cli.main(["eval-vae", "--checkpoint", str(bad)]) == 2
  assert "not a sorax VAE file" in capsys.readouterr().err


def test_psnr_and_random_crop():
  assert float(psnr(jnp.float32(4.0))) == pytest.approx(0.0)
  assert float(psnr(jnp.float32(4e-4))) == pytest.approx(40.0, abs=1e-4)
  v = jnp.arange(2 * 3 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 3, 8, 8, 1)
  c = random_crop(jax.random.key(0), v, (4, 5))
  assert c.shape == (2, 3, 4, 5, 1)
  for b in range(2):  # each crop is a contiguous window of its own clip
    i, j = np.argwhere(np.asarray(v[b, 0, :, :, 0]) == float(c[b, 0, 0, 0, 0]))[0]
    np.testing.assert_array_equal(c[b], v[b, :, i:i + 4, j:j + 5])
  with pytest.raises(ValueError, match="larger"):
    random_crop(jax.random.key(0), v, (9, 4))


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_adversarial_option_trains_and_loads_the_vae_alone(tmp_path):
  wd = tmp_path / "gan"
  assert cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir", str(wd),
                   "--no-progress", "--config.loss.adversarial=0.1",
                   "--config.loss.adversarial_start=1", "--config.loss.disc_widths=[8,8]"]) == 0
  rows = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
  assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_adv"]) for r in rows)
  codec = vae_codec.load_vae(str(wd))
  assert type(nnx.merge(codec.graphdef, codec.params)).__name__ == "VAE"
  assert cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir",
                   str(tmp_path / "p"), "--no-progress", "--config.loss.perceptual=1.0"]) == 2


@pytest.mark.slow  # an option the shipped VAE does not use; run by benchmarks/slow_tests.py
def test_warm_start_adds_a_refine_head(vae_run, tmp_path, capsys):
  """init_from copies every weight whose path and shape match; the new head starts fresh and,
  its last conv being zero, the warm-started VAE first decodes exactly like its source."""
  src = vae_codec.load_vae(str(vae_run))
  work = tmp_path / "warm"
  assert cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir", str(work),
                   "--no-progress", f"--config.train.init_from={vae_run}",
                   "--config.vae.refine=4", "--config.train.steps=1",
                   "--config.optim.lr=0.0"]) == 0
  warm = vae_codec.load_vae(str(work))
  assert warm.cfg.refine == 4 and src.cfg.refine == 0
  v = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 5, 16, 16, 3)), jnp.float32)
  np.testing.assert_allclose(warm.decode(warm.encode(v)), src.decode(src.encode(v)), atol=1e-5)
  rc = cli.main(["train", "--config", "experiments/vae_world.py:tiny", "--workdir",
                 str(tmp_path / "w2"), "--no-progress", f"--config.train.init_from={vae_run}",
                 "--config.vae.latent_channels=2", "--config.train.steps=1"])
  assert rc == 2 and "have no place" in capsys.readouterr().err
