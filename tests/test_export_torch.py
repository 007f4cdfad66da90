"""The PyTorch reference (issue 10, part 2): it loads `sorax export` files and matches the JAX
text encoder, DiT and VAE decoder within 1e-3 relative (max |torch - jax| / max |jax|) in
float32, on random tiny models and on the shipped checkpoints. Skipped without torch."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

torch = pytest.importorskip("torch")

from sorax.export import torch_ref, torch_vae  # noqa: E402
from sorax.models import vae as vae_lib  # noqa: E402
from sorax.models import weights  # noqa: E402
from sorax.models.vae_codec import DEFAULT_VAE, VAECodec, load_vae, save_vae  # noqa: E402
from tests.export_util import (inputs, jax_forward, random_pipeline, randomize,  # noqa: E402
                               rel_err)

TOL = 1e-3
torch.set_num_threads(1)  # the test machine's cores are shared (xdist workers)


def _t(d):
  return (torch.from_numpy(d["x"]), torch.from_numpy(d["positions"]).long(),
          torch.from_numpy(d["t"]), torch.from_numpy(d["ids"]).long(), torch.from_numpy(d["mask"]))


def _torch_forward(gen, d):
  x, pos, t, ids, mask = _t(d)
  with torch.no_grad():
    text = gen.encode_text(ids, mask)
    return text.numpy(), gen.dit(x, pos, t, text, mask).numpy(), gen(x, pos, t, ids, mask).numpy()


@pytest.mark.parametrize("extra", [(), ("--config.model.scan_layers=False",
                                        "--config.model.head_hidden=16",
                                        "--config.model.qk_norm=False",
                                        "--config.model.pooled_text=True"),
                                   ("--config.model.slots=4", "--config.model.palette_head=True",
                                    "--config.model.abs_pos=True",
                                    "--config.model.self_cond=True")],
                         ids=["scanned", "loop-mlp-head-no-qknorm-pooled-text",
                              "slots-palette-abs-pos-self-cond"])
def test_random_tiny_generator_matches_jax(extra, tmp_path):
  pipe = random_pipeline(*extra, seed=len(extra))
  f = pipe.save_weights(tmp_path / "g.safetensors", dtype="float32", layout="per_layer")
  gen = torch_ref.load_generator(f)
  assert set(gen.state_dict()) == set(load_file(str(f)))  # state_dict names = export names
  d = inputs(pipe, batch=2)
  d["mask"][1, 5:] = False  # a shorter prompt: padded keys are masked in both
  d["ids"][1, 5:] = 0
  jt, jv = jax_forward(pipe, d)
  tt, tv, tg = _torch_forward(gen, d)
  assert rel_err(tt, jt) < TOL and rel_err(tv, jv) < TOL and rel_err(tg, jv) < TOL
  assert np.abs(jv).max() > 0.1  # a real signal, not zeros compared with zeros
  if pipe.cfg.model.self_cond:  # the self-conditioning input too
    from flax import nnx
    prev = np.random.default_rng(2).standard_normal(d["x"].shape).astype(np.float32)
    model = nnx.merge(pipe.graphdef, pipe.params)
    jp = np.asarray(model.dit(d["x"], d["positions"], d["t"], jt, d["mask"], x0_prev=prev))
    x, pos, t, _, mask = _t(d)
    with torch.no_grad():
      tp = gen.dit(x, pos, t, torch.from_numpy(tt), mask, x0_prev=torch.from_numpy(prev)).numpy()
    assert rel_err(tp, jp) < TOL and rel_err(jp, jv) > 1e-3


def test_per_token_times_and_token_mask_match_jax(tmp_path):
  pipe = random_pipeline(seed=3)
  gen = torch_ref.load_generator(pipe.save_weights(tmp_path / "g.safetensors", dtype="float32",
                                                   layout="per_layer"))
  d = inputs(pipe, batch=2, seed=1)
  n = d["x"].shape[1]
  t_tok = np.random.default_rng(0).uniform(0, 1, (2, n)).astype(np.float32)
  t_tok[:, :2] = 0.0  # given tokens (masked conditioning)
  token_mask = np.ones((2, n), bool)
  token_mask[1, -3:] = False
  model = nnx.merge(pipe.graphdef, pipe.params)
  want = np.asarray(model(d["x"], d["positions"], t_tok, d["ids"], d["mask"], token_mask))
  x, pos, _, ids, mask = _t(d)
  with torch.no_grad():
    got = gen(x, pos, torch.from_numpy(t_tok), ids, mask, torch.from_numpy(token_mask)).numpy()
  assert rel_err(got, want) < TOL


@pytest.mark.skipif(not weights.SHIPPED.is_file(), reason="no shipped checkpoint in this tree")
def test_shipped_world_checkpoint_matches_jax_at_batch_1(tmp_path):
  from sorax.sample import Pipeline
  pipe = Pipeline.load()
  f = pipe.save_weights(tmp_path / "w32.safetensors", dtype="float32", layout="per_layer")
  d = inputs(pipe, batch=1, prompts=("large red circle moving right on a navy background",))
  jt, jv = jax_forward(pipe, d)
  for src in (f, weights.SHIPPED):  # the per-layer export and the stacked shipped file
    tt, tv, _ = _torch_forward(torch_ref.load_generator(src), d)
    assert rel_err(tt, jt) < TOL and rel_err(tv, jv) < TOL, src


def _tiny_vae(seed=0):
  cfg = vae_lib.VAEConfig(latent_channels=4, patch=2, widths=(8, 16), spatial_down=(True,),
                          temporal_down=(True,), blocks=1, refine=4)
  graphdef, params = nnx.split(nnx.eval_shape(lambda: vae_lib.VAE(cfg, rngs=nnx.Rngs(seed))))
  return VAECodec(cfg=cfg, graphdef=graphdef, params=randomize(params, seed))


def _vae_parity(codec, path, latent, stats=None):
  save_vae(path, codec.cfg, codec.params)
  dec = torch_vae.load_vae_decoder(path)
  if stats is not None:
    codec = codec.with_stats(stats["mean"], stats["std"])
  want = np.asarray(codec.decode(latent))
  with torch.no_grad():
    got = (dec(torch.from_numpy(latent)) if stats is None else
           dec.decode(torch.from_numpy(latent), stats["mean"], stats["std"])).numpy()
  assert got.shape == want.shape
  return rel_err(got, want)


def test_random_tiny_vae_decoder_matches_jax(tmp_path):
  codec = _tiny_vae()
  z = np.random.default_rng(0).standard_normal((2, 2, 3, 3, 4)).astype(np.float32)
  assert _vae_parity(codec, tmp_path / "v.safetensors", z) < TOL
  stats = {"mean": [0.1, -0.2, 0.3, 0.0], "std": [0.5, 1.5, 1.0, 2.0]}
  assert _vae_parity(codec, tmp_path / "v.safetensors", z, stats) < TOL
  # The safetensors VAE file also loads back into JAX, to the same weights.
  back = load_vae(tmp_path / "v.safetensors")
  for a, b in zip(nnx.to_flat_state(codec.params), nnx.to_flat_state(back.params)):
    np.testing.assert_array_equal(np.asarray(a[1][...]), np.asarray(b[1][...]))


@pytest.mark.skipif(not DEFAULT_VAE.is_file(), reason="no shipped VAE in this tree")
def test_shipped_world_vae_decoder_matches_jax_at_batch_1(tmp_path):
  codec = load_vae("")
  z = np.random.default_rng(1).standard_normal((1, 2, 4, 4, 16)).astype(np.float32)
  assert _vae_parity(codec, tmp_path / "vae.safetensors", z) < TOL


def test_bad_files_get_one_clear_error(tmp_path):
  with pytest.raises(torch_ref.ExportError, match="not found"):
    torch_ref.load_generator(tmp_path / "missing.safetensors")
  junk = tmp_path / "junk.safetensors"
  junk.write_bytes(b"nope")
  with pytest.raises(torch_ref.ExportError, match="not a safetensors file"):
    torch_ref.load_generator(junk)
  codec = _tiny_vae()
  save_vae(tmp_path / "v.safetensors", codec.cfg, codec.params)
  with pytest.raises(torch_ref.ExportError, match="not a sorax generator file"):
    torch_ref.load_generator(tmp_path / "v.safetensors")
  pipe = random_pipeline()
  g = pipe.save_weights(tmp_path / "g.safetensors", layout="per_layer")
  with pytest.raises(torch_ref.ExportError, match="not a sorax VAE file"):
    torch_vae.load_vae_decoder(g)
  from safetensors.numpy import save_file
  meta = weights.read_metadata(g)
  cfg = json.loads(meta["config"])
  cfg["model"]["depth"] = 2  # the file has 3 blocks
  save_file(load_file(str(g)), str(tmp_path / "bad.safetensors"),
            metadata={**meta, "config": json.dumps(cfg)})
  with pytest.raises(torch_ref.ExportError, match=r"unexpected \['dit\.blocks\.2\."):
    torch_ref.load_generator(tmp_path / "bad.safetensors")


def test_the_reference_imports_no_jax():
  code = ("import sys, sorax.export.torch_ref; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'jaxlib')]; "
          "assert not bad, bad")
  r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr
