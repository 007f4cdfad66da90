"""`sorax export` (issue 10, part 1): per-layer tensor names, both layouts read to identical
outputs, Orbax, dtypes, the shipped checkpoint, atomic writes and one clear error per bad input."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from sorax.cli import main
from sorax.models import weights
from sorax.sample import Pipeline
from tests.export_util import inputs, jax_forward, random_pipeline, rel_err


@pytest.fixture(scope="module")
def pipe():
  return random_pipeline()


@pytest.fixture(scope="module")
def stacked(pipe, tmp_path_factory):
  return pipe.save_weights(tmp_path_factory.mktemp("s") / "stacked.safetensors", dtype="float32")


def _same_params(a, b):
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_per_layer_names_shapes_and_identical_outputs(pipe, stacked, tmp_path):
  f = pipe.save_weights(tmp_path / "p.safetensors", dtype="float32", layout="per_layer")
  raw = load_file(str(f))
  d, h = pipe.cfg.model.width, pipe.cfg.model.heads
  for i in range(pipe.cfg.model.depth):
    assert raw[f"dit.blocks.{i}.attn.wq"].shape == (d, h, d // h)
    assert raw[f"dit.blocks.{i}.modulation.kernel"].shape == (d, 6 * d)
  assert not any(k.startswith("dit.blocks.") and not k.split(".")[2].isdigit() for k in raw)
  assert f"dit.blocks.{pipe.cfg.model.depth}.attn.wq" not in raw
  assert weights.read_metadata(f)["format"] == "sorax.generator/2"
  old = load_file(str(stacked))
  np.testing.assert_array_equal(raw["dit.blocks.1.cross.wk"], old["dit.blocks.cross.wk"][1])
  a, b = Pipeline.load(stacked), Pipeline.load(f)
  _same_params(pipe, b)
  d_in = inputs(pipe)
  for x, y in zip(jax_forward(a, d_in), jax_forward(b, d_in)):
    np.testing.assert_array_equal(x, y)
  assert b.step == pipe.step and b.cfg.to_dict() == pipe.cfg.to_dict()


def test_a_non_scanned_model_reads_either_layout(pipe, stacked, tmp_path):
  """The file's layout and the model's (scan_layers) are independent: a stacked file loads
  into a per-layer (Python loop) DiT, to the same outputs."""
  meta = weights.read_metadata(stacked)
  cfg = json.loads(meta["config"])
  cfg["model"]["scan_layers"] = False
  loop = tmp_path / "loop.safetensors"
  save_file(load_file(str(stacked)), str(loop), metadata={**meta, "config": json.dumps(cfg)})
  a, b = Pipeline.load(stacked), Pipeline.load(loop)
  assert "0" in str(jax.tree_util.tree_structure(b.params))  # blocks are per layer there
  pa, pb = weights.flat_tensors(a.params), weights.flat_tensors(b.params)
  for k, v in pb.items():
    if k.startswith("dit.blocks."):
      i, rest = k[len("dit.blocks."):].split(".", 1)
      np.testing.assert_array_equal(v, pa[f"dit.blocks.{rest}"][int(i)])
  d_in = inputs(pipe)  # scan vs Python loop: the same math, fused differently by XLA
  assert rel_err(jax_forward(b, d_in)[1], jax_forward(a, d_in)[1]) < 1e-5


def test_orbax_export_round_trip_and_dtypes(pipe, tmp_path):
  o = pipe.save_weights(tmp_path / "orb", dtype="float32", format="orbax")
  assert weights.is_orbax_export(o) and (o / "params").is_dir()
  assert json.loads((o / "sorax_generator.json").read_text())["format"] == "sorax.generator/2"
  _same_params(pipe, Pipeline.load(o))
  o2 = pipe.save_weights(o, dtype="bfloat16", format="orbax")  # replaces its own export
  back = Pipeline.load(o2)
  for x, y in zip(jax.tree.leaves(pipe.params), jax.tree.leaves(back.params)):
    want = np.asarray(np.asarray(x).astype(weights.DTYPES["bfloat16"]), np.float32)
    np.testing.assert_array_equal(want, np.asarray(y))
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_cli_export_of_the_shipped_checkpoint_reloads_identically_and_samples(tmp_path, capsys):
  if not weights.SHIPPED.is_file():
    pytest.skip("no shipped checkpoint in this tree")
  f = tmp_path / "w32.safetensors"
  assert main(["export", "--out", str(f), "--dtype", "float32"]) == 0  # default: shipped
  info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert info["format"] == "safetensors" and info["dtype"] == "float32"
  assert "dit.blocks.0.attn.wq" in load_file(str(f))
  a, b = Pipeline.load(), Pipeline.load(f)
  _same_params(a, b)
  d_in = inputs(a, batch=1, prompts=("large red circle moving right on a navy background",))
  for x, y in zip(jax_forward(a, d_in), jax_forward(b, d_in)):
    np.testing.assert_array_equal(x, y)
  # One sample: the shipped best-of-8 default is tested on the shipped file (test_weights.py).
  assert main(["sample", "--checkpoint", str(f), "--prompt", "small red circle", "--out",
               str(tmp_path / "o"), "--steps", "1", "--best-of", "1", "--no-watermark",
               "--no-c2pa"]) == 0
  assert (tmp_path / "o" / "0.mp4").is_file()


def test_each_bad_input_is_one_clear_error(pipe, stacked, tmp_path, capsys):
  def err(*argv):
    assert main(["export", *argv]) == 2
    return capsys.readouterr().err.strip()

  msg = err("--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "a.safetensors"))
  assert msg == f"sorax export: error: checkpoint {tmp_path / 'nope'} not found"
  junk = tmp_path / "junk.bin"
  junk.write_bytes(b"definitely not weights")
  assert "not a safetensors file" in err("--checkpoint", str(junk), "--out", str(tmp_path / "b"))
  assert "is a directory" in err("--checkpoint", str(stacked), "--out", str(tmp_path))
  (tmp_path / "keep").mkdir()
  (tmp_path / "keep" / "mine.txt").write_text("x")
  assert "not a sorax Orbax export" in err("--checkpoint", str(stacked), "--format", "orbax",
                                           "--out", str(tmp_path / "keep"))
  assert (tmp_path / "keep" / "mine.txt").is_file()
  assert "stablehlo only" in err("--checkpoint", str(stacked), "--frames", "3", "--out",
                                 str(tmp_path / "c.safetensors"))
  for flag, value in (("--format", "onnx"), ("--dtype", "int8")):
    with pytest.raises(SystemExit) as e:
      main(["export", "--checkpoint", str(stacked), flag, value, "--out", str(tmp_path / "d")])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
  with pytest.raises(weights.WeightsError, match="unknown dtype"):
    pipe.save_weights(tmp_path / "e.safetensors", dtype="int8")
  with pytest.raises(weights.WeightsError, match="unknown layout"):
    pipe.save_weights(tmp_path / "e.safetensors", layout="sideways")
  # A per-layer file with a layer missing names it.
  f = pipe.save_weights(tmp_path / "p.safetensors", dtype="float32", layout="per_layer")
  t = {k: v for k, v in load_file(str(f)).items() if not k.startswith("dit.blocks.2.")}
  save_file(t, str(tmp_path / "short.safetensors"), metadata=weights.read_metadata(f))
  with pytest.raises(weights.WeightsError, match=r"missing \['dit\.blocks\.2\."):
    Pipeline.load(tmp_path / "short.safetensors")
  assert not list(tmp_path.glob(".*tmp*"))


def test_a_failed_write_leaves_nothing(pipe, tmp_path, monkeypatch):
  import safetensors.numpy

  def boom(*a, **k):
    raise OSError("disk full")
  monkeypatch.setattr(safetensors.numpy, "save_file", boom)
  with pytest.raises(OSError, match="disk full"):
    pipe.save_weights(tmp_path / "x.safetensors", layout="per_layer")
  assert not list(tmp_path.iterdir())
