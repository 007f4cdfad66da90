"""Serving export (issue 10, part 4): StableHLO of encode_text, denoise and decode through
jax.export with a symbolic batch, reloaded with jax.export.deserialize and run without the model
code, matching the live model."""

import dataclasses
import json
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx

from sorax.cli import main
from sorax.export import serving
from sorax.models import vae as vae_lib
from sorax.models.vae_codec import save_vae
from tests.export_util import inputs, jax_forward, random_pipeline, randomize, rel_err


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory):
  cfg = vae_lib.VAEConfig(latent_channels=4, patch=2, widths=(8, 16), spatial_down=(True,),
                          temporal_down=(True,), blocks=1, refine=4)
  graphdef, params = nnx.split(vae_lib.VAE(cfg, rngs=nnx.Rngs(0)))
  path = tmp_path_factory.mktemp("vae") / "vae.safetensors"
  save_vae(path, cfg, randomize(params))
  return path


@pytest.fixture(scope="module")
def vae_pipe(vae_file):
  """A tiny generator on a (random) VAE latent, with latent statistics to undo in decode."""
  pipe = random_pipeline("--config.codec.name=vae", f"--config.codec.checkpoint={vae_file}",
                         "--config.data.frames=5")
  pipe.latent_stats = {"mean": [0.1, -0.2, 0.3, 0.0], "std": [0.5, 1.5, 1.0, 2.0]}
  return pipe


@pytest.fixture(scope="module")
def served(vae_pipe, tmp_path_factory):
  path = serving.export_pipeline(vae_pipe, tmp_path_factory.mktemp("s") / "serve.zip")
  return path, serving.load_serving(path)


def test_reloaded_functions_match_the_live_model_at_any_batch(vae_pipe, served):
  path, m = served
  assert m.manifest["functions"]["denoise"]["in"][0]["shape"][0] == "b"
  assert all(f.platforms == ("cpu", "cuda", "tpu") for f in m.functions.values())
  assert m.manifest["latent_shape"] == [3, 4, 4, 4] and m.manifest["prediction"] == "x0"
  for batch in (1, 3):
    d = inputs(vae_pipe, batch=batch, seed=batch)
    np.testing.assert_array_equal(d["positions"][0], m.positions)
    want_text, want_v = jax_forward(vae_pipe, d)
    text = m.call("encode_text", d["ids"], d["mask"])
    v = m.call("denoise", d["x"], d["positions"], d["t"], text, d["mask"])
    assert text.shape == want_text.shape and v.shape == want_v.shape
    assert rel_err(text, want_text) < 1e-5 and rel_err(v, want_v) < 1e-5
    z = np.random.default_rng(batch).standard_normal((batch, 3, 4, 4, 4)).astype(np.float32)
    video = m.call("decode", z)
    want = np.asarray(vae_pipe.codec.decode(z))  # the VAE decoder, latent stats undone
    assert video.shape == (batch, 5, 16, 16, 3) and rel_err(video, want) < 1e-5


def test_it_runs_with_jax_alone(vae_pipe, served, tmp_path):
  """A fresh process loads the file and runs all three functions; no sorax model module, no
  Flax and no weights file are imported or read."""
  path, _ = served
  d = inputs(vae_pipe, batch=2)
  np.savez(tmp_path / "in.npz", **d)
  code = f"""
import sys, numpy as np
from sorax.export.serving import load_serving
m = load_serving({str(path)!r})
d = np.load({str(tmp_path / 'in.npz')!r})
text = m.call("encode_text", d["ids"], d["mask"])
v = m.call("denoise", d["x"], d["positions"], d["t"], text, d["mask"])
video = m.call("decode", np.zeros((2, 3, 4, 4, 4), np.float32))
np.save({str(tmp_path / 'v.npy')!r}, np.asarray(v))
bad = [k for k in sys.modules if k.startswith(("sorax.models", "sorax.sample", "flax"))]
assert not bad, bad
print(video.shape)
"""
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.strip().splitlines()[-1] == "(2, 5, 16, 16, 3)"
  assert rel_err(np.load(tmp_path / "v.npy"), jax_forward(vae_pipe, d)[1]) < 1e-5


def test_cli_stablehlo_export_float16_and_errors(tmp_path, capsys):
  pipe = random_pipeline()
  f = pipe.save_weights(tmp_path / "g.safetensors", dtype="float32", layout="per_layer")
  out = tmp_path / "serve.zip"
  assert main(["export", "--checkpoint", str(f), "--format", "stablehlo", "--dtype", "float16",
               "--frames", "4", "--height", "8", "--width", "24", "--platforms", "cpu",
               "--out", str(out)]) == 0
  info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert info["serving"] == str(out) and info["dtype"] == "float16"
  assert serving.load_serving(out).manifest["platforms"] == ["cpu"]
  with zipfile.ZipFile(out) as z:
    assert sorted(z.namelist()) == ["decode.jaxexport", "denoise.jaxexport",
                                    "encode_text.jaxexport", "manifest.json", "positions.npy"]
  m = serving.load_serving(out)
  assert m.manifest["canvas"] == {"frames": 4, "height": 8, "width": 24}
  assert m.positions.shape == (4 * 1 * 3, 3)
  # Another canvas than the config's: the live model on the same tokens, weights in float16.
  half = dataclasses.replace(pipe, params=jax.tree.map(
      lambda a: a.astype("float16").astype("float32"), pipe.params))
  d = inputs(pipe, batch=2)
  d["x"] = np.random.default_rng(0).standard_normal((2, 12, d["x"].shape[2])).astype(np.float32)
  d["positions"] = np.broadcast_to(m.positions, (2, 12, 3)).copy()
  want_text, want = jax_forward(half, d)
  v = m.call("denoise", d["x"], d["positions"], d["t"], m.call("encode_text", d["ids"],
                                                                 d["mask"]), d["mask"])
  assert rel_err(v, want) < 1e-5
  with pytest.raises(serving.ServingError, match=r"argument 0 has shape \(2, 5"):
    m.call("denoise", d["x"][:, :5], d["positions"], d["t"], want_text, d["mask"])
  with pytest.raises(serving.ServingError, match="no function 'generate'"):
    m.call("generate", d["x"])
  with pytest.raises(serving.ServingError, match="not a sorax serving file"):
    serving.load_serving(f)
  with pytest.raises(serving.ServingError, match="not found"):
    serving.load_serving(tmp_path / "missing.zip")
  assert main(["export", "--checkpoint", str(f), "--format", "stablehlo", "--height", "7",
               "--out", str(tmp_path / "bad.zip")]) == 2
  assert "height=7 must be a positive multiple of 8" in capsys.readouterr().err
  assert main(["export", "--checkpoint", str(f), "--format", "stablehlo", "--platforms",
               "cpu,gpu", "--out", str(tmp_path / "bad.zip")]) == 2
  assert "--platforms cpu,gpu: choose from cpu,cuda,tpu" in capsys.readouterr().err
  assert not (tmp_path / "bad.zip").exists() and not list(tmp_path.glob(".*"))


def test_self_conditioned_denoise_takes_the_last_estimate(tmp_path):
  """model.self_cond: the exported denoise has a sixth input, x0_prev, and matches the live DiT
  with it."""
  pipe = random_pipeline("--config.model.self_cond=True", seed=4)
  m = serving.load_serving(serving.export_pipeline(pipe, tmp_path / "s.zip", platforms=("cpu",)))
  assert len(m.manifest["functions"]["denoise"]["in"]) == 6
  d = inputs(pipe, batch=2)
  prev = np.random.default_rng(1).standard_normal(d["x"].shape).astype(np.float32)
  model = nnx.merge(pipe.graphdef, pipe.params)
  text = model.encode_text(d["ids"], d["mask"])
  want = np.asarray(model.dit(d["x"], d["positions"], d["t"], text, d["mask"], x0_prev=prev))
  got = m.call("denoise", d["x"], d["positions"], d["t"], np.asarray(text), d["mask"], prev)
  assert rel_err(got, want) < 1e-5
  assert rel_err(np.asarray(model.dit(d["x"], d["positions"], d["t"], text, d["mask"])), want) > 1e-3
