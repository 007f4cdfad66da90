"""Weights-only model files (sorax/models/weights.py): round trip, dtypes, bad files, the shipped
checkpoint, and the object-weighted loss's pixel mask."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax.data import world
from sorax.models import weights
from sorax.sample import Pipeline
from sorax.train.step import motion_mask, object_mask
from sorax.train.trainer import Trainer
from tests.test_train import tiny, tiny_pipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
  """A tiny pipeline with non-trivial weights (a few training steps, so zero-init heads moved)."""
  return tiny_pipeline(tmp_path_factory.mktemp("w"), 3)


def _leaves(params):
  return [np.asarray(x) for x in jax.tree.leaves(params)]


def test_float32_round_trip_gives_identical_outputs(pipe, tmp_path):
  f = pipe.save_weights(tmp_path / "m.safetensors", dtype="float32")
  back = Pipeline.load(f)
  for a, b in zip(_leaves(pipe.params), _leaves(back.params)):
    np.testing.assert_array_equal(a, b)
  assert back.step == pipe.step and back.cfg.to_dict() == pipe.cfg.to_dict()
  pipe.policy = back.policy = None
  a = pipe.generate(["small red circle"], steps=2, seed=3)
  b = back.generate(["small red circle"], steps=2, seed=3)
  np.testing.assert_array_equal(a, b)


def test_float16_file_holds_float16_and_loads_as_float32(pipe, tmp_path):
  from safetensors.numpy import load_file
  f = pipe.save_weights(tmp_path / "h.safetensors")  # float16 by default
  raw = load_file(str(f))
  assert all(v.dtype == np.float16 for v in raw.values())
  assert "dit.blocks.attn.wq" in raw  # documented names: paths joined by "."
  back = Pipeline.load(f)
  for a, b in zip(_leaves(pipe.params), _leaves(back.params)):
    assert b.dtype == np.float32
    np.testing.assert_array_equal(a.astype(np.float16).astype(np.float32), b)
  meta = weights.read_metadata(f)
  assert json.loads(meta["config"])["data"]["height"] == pipe.cfg.data.height
  assert meta["tokenizer_sha256"] == weights.file_sha256(pipe.tokenizer.path)


def test_bad_files_get_one_clear_error(pipe, tmp_path):
  with pytest.raises(weights.WeightsError, match="not found"):
    Pipeline.load(tmp_path / "missing.safetensors")
  junk = tmp_path / "junk.safetensors"
  junk.write_bytes(b"not a safetensors file at all")
  with pytest.raises(weights.WeightsError, match="not a safetensors file"):
    Pipeline.load(junk)
  from safetensors.numpy import save_file
  other = tmp_path / "other.safetensors"
  save_file({"x": np.zeros(3, np.float32)}, str(other), metadata={"format": "something"})
  with pytest.raises(weights.WeightsError, match="not a sorax generator file"):
    Pipeline.load(other)
  f = pipe.save_weights(tmp_path / "m.safetensors", dtype="float32")
  meta = weights.read_metadata(f)
  cfg = json.loads(meta["config"])
  cfg["model"]["width"] = 64  # the tensors no longer fit the config
  from safetensors.numpy import load_file
  save_file(load_file(str(f)), str(tmp_path / "bad.safetensors"),
            metadata={**meta, "config": json.dumps(cfg)})
  with pytest.raises(weights.WeightsError, match="shape"):
    Pipeline.load(tmp_path / "bad.safetensors")


def test_loading_a_weights_file_does_not_import_train(pipe, tmp_path):
  f = pipe.save_weights(tmp_path / "m.safetensors")
  code = ("import sys; from sorax.models.weights import load_generator; "
          f"g = load_generator({str(f)!r}); "
          "assert not [m for m in sys.modules if m.startswith('sorax.train')], "
          "[m for m in sys.modules if m.startswith('sorax.train')]; print(g.step)")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == str(pipe.step)


@pytest.mark.skipif(not weights.SHIPPED.is_file(), reason="no shipped checkpoint in this tree")
def test_shipped_checkpoint_loads_and_samples_at_its_canvas():
  assert weights.SHIPPED.stat().st_size <= 25 * 2 ** 20
  p = Pipeline.load()  # no path: the shipped file
  d = p.cfg.data
  assert (d.height, d.width, d.frames) == (32, 32, 17)
  v = p.generate(["large red circle moving right on a navy background"], steps=2)
  assert v.shape == (1, 17, 32, 32, 3) and v.dtype == np.uint8


def test_object_mask_marks_exactly_the_object_pixels():
  spec = world.SceneSpec(background="forest", wall=True, objects=(
      world.ObjectSpec("red", "square", "large", "static", start=(0.25, 0.5)),))
  video = world.render(spec, 32, 32, 3)
  m = np.asarray(object_mask(jnp.asarray(video)))
  want = np.all(video == np.array(world.OBJECT_COLORS["red"], np.uint8), axis=-1)
  np.testing.assert_array_equal(m.astype(bool), want)
  assert 0 < m.mean() < 0.2


def test_motion_mask_marks_the_pixels_that_change_between_frames():
  still = world.SceneSpec(background="navy", wall=False, objects=(
      world.ObjectSpec("red", "square", "large", "static", start=(0.5, 0.5)),))
  moving = world.SceneSpec(background="navy", wall=False, objects=(
      world.ObjectSpec("red", "square", "large", "right", start=(0.3, 0.5)),))
  v = np.stack([world.render(still, 32, 32, 5), world.render(moving, 32, 32, 5)])
  m = np.asarray(motion_mask(jnp.asarray(v)))
  assert m.shape == (2, 5, 32, 32) and not m[0].any()
  diff = np.any(v[1, 1:] != v[1, :-1], axis=-1)  # frame k+1 vs k
  np.testing.assert_array_equal(m[1, 0], diff[0])      # frame 0: only its next neighbour
  np.testing.assert_array_equal(m[1, 4], diff[3])      # the last: only its previous one
  np.testing.assert_array_equal(m[1, 2], diff[1] | diff[2])
  assert 0 < m[1].mean() < 0.2
  one = np.asarray(motion_mask(jnp.asarray(v[:, :1])))  # a single frame: nothing changes
  assert one.shape == (2, 1, 32, 32) and not one.any()


def test_cli_export_then_sample_from_the_file(pipe, tmp_path, capsys):
  from sorax.cli import main
  work = tmp_path / "w"
  tr = Trainer(tiny("--config.train.steps=1"), work)
  tr.fit(1, progress=False)
  tr.close()
  f = tmp_path / "m.safetensors"
  assert main(["export", "--checkpoint", str(work), "--out", str(f)]) == 0
  info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert info["step"] == 1 and info["dtype"] == "float16" and f.is_file()
  assert main(["sample", "--checkpoint", str(f), "--prompt", "small red circle", "--out",
               str(tmp_path / "o"), "--steps", "1", "--no-watermark"]) == 0
  assert (tmp_path / "o" / "0.mp4").is_file()
  assert main(["sample", "--checkpoint", str(tmp_path / "nope.safetensors"), "--prompt", "x",
               "--out", str(tmp_path / "o2")]) == 2
  assert "not found" in capsys.readouterr().err and not (tmp_path / "o2").exists()


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_warm_start_adds_an_mlp_head_only_when_allowed(tmp_path):
  """train.init_from into a model with a new output MLP (model.head_hidden): with
  train.init_allow_fresh the shared weights are copied and the head starts at zero, so the model
  computes what its source did; without it, the missing source weights are one clear error."""
  src = tmp_path / "src"
  tr = Trainer(tiny("--config.train.steps=2", "--config.optim.lr=1e-2"), src)
  tr.fit(2, progress=False)
  tr.close()
  source = Pipeline.load(src)
  grow = ("--config.model.head_hidden=16", f"--config.train.init_from={src}")
  with pytest.raises(ValueError, match="have no source"):
    Trainer(tiny(*grow), tmp_path / "refused")
  warm = Trainer(tiny(*grow, "--config.train.init_allow_fresh=True"), tmp_path / "warm")
  params = nnx.to_pure_dict(jax.device_get(warm.state.params))
  warm.close()
  dit = params["dit"]
  assert dit["head_in"]["kernel"].shape[1] == 16 and not np.any(dit["head_out"]["kernel"])
  np.testing.assert_array_equal(dit["final_out"]["kernel"],
                                np.asarray(nnx.to_pure_dict(source.params)["dit"]["final_out"]["kernel"]))


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_warm_start_grows_depth_as_identity_blocks(tmp_path):
  """train.init_grow_depth: a 2-block source fills the first 2 of 3 blocks and the added block
  is the identity (zero gates, zero cross-attention output), so the deeper model samples
  exactly what its source did; without the flag the depth mismatch is one clear error."""
  src = tmp_path / "src"
  tr = Trainer(tiny("--config.train.steps=2", "--config.optim.lr=1e-2"), src)
  tr.fit(2, progress=False)
  tr.close()
  source = Pipeline.load(src)
  grow = ("--config.model.depth=3", f"--config.train.init_from={src}")
  with pytest.raises(ValueError, match="is another model"):
    Trainer(tiny(*grow), tmp_path / "refused")
  warm = Trainer(tiny(*grow, "--config.train.init_grow_depth=True"), tmp_path / "warm")
  blocks = nnx.to_pure_dict(jax.device_get(warm.state.params))["dit"]["blocks"]
  src_blocks = nnx.to_pure_dict(source.params)["dit"]["blocks"]
  np.testing.assert_array_equal(blocks["attn"]["wq"][:2], np.asarray(src_blocks["attn"]["wq"]))
  assert np.any(blocks["attn"]["wq"][2]) and not np.any(blocks["cross"]["wo"][2])
  deeper = Pipeline(cfg=warm.cfg, graphdef=warm.graphdef, params=warm.state.ema,
                    tokenizer=warm.tokenizer, step=0, latent_stats=warm.latent_stats, policy=None)
  warm.close()
  prompt = ["small red circle moving left on a black background"]
  np.testing.assert_array_equal(deeper.generate(prompt, seed=3), source.generate(prompt, seed=3))
  # Training moves the new block off the identity (its gates get gradients).
  tr = Trainer(tiny(*grow, "--config.train.init_grow_depth=True", "--config.train.steps=2",
                    "--config.optim.lr=1e-2"), tmp_path / "trained")
  tr.fit(2, progress=False)
  mod = nnx.to_pure_dict(jax.device_get(tr.state.params))["dit"]["blocks"]["modulation"]
  tr.close()
  assert np.any(mod["kernel"][2])


def test_set_sample_defaults_rewrites_only_the_sampling_settings(tmp_path):
  import shutil

  from safetensors.numpy import load_file
  f = tmp_path / "w.safetensors"
  shutil.copy(weights.SHIPPED, f)
  before = weights.read_metadata(f)
  weights.set_sample_defaults(f, cfg=1.75)
  after = weights.read_metadata(f)
  cfg_b, cfg_a = json.loads(before["config"]), json.loads(after["config"])
  assert cfg_a["sample"]["cfg"] == 1.75
  cfg_a["sample"]["cfg"] = cfg_b["sample"]["cfg"]
  assert cfg_a == cfg_b and {k: v for k, v in after.items() if k != "config"} == {
      k: v for k, v in before.items() if k != "config"}
  old, new = load_file(str(weights.SHIPPED)), load_file(str(f))
  assert old.keys() == new.keys() and all(np.array_equal(old[k], new[k]) for k in old)
  with pytest.raises(weights.WeightsError, match="unknown sample settings \\['guidance'\\]"):
    weights.set_sample_defaults(f, guidance=2.0)
  assert weights.read_metadata(f) == after  # nothing half written
