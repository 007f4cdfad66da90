"""Parity of the exports against the live JAX model: the PyTorch reference (text encoder, DiT,
VAE decoder) and the reloaded serving functions, on the shipped checkpoints and random tiny
models. Prints one JSON line of max |got - jax| / max |jax| per model (float32, CPU).

    python benchmarks/export_parity.py          # from the repository root; needs the torch extra
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))


def main() -> None:
  import numpy as np
  import torch
  from flax import nnx

  from sorax.export import serving, torch_ref, torch_vae
  from sorax.models import vae as vae_lib
  from sorax.models.vae_codec import VAECodec, load_vae, save_vae
  from sorax.sample import Pipeline
  from tests.export_util import inputs, jax_forward, random_pipeline, randomize, rel_err

  out = {}
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="sorax-parity-"))

  def gen_parity(name, pipe, batch):
    f = pipe.save_weights(tmp / f"{name}.safetensors", dtype="float32", layout="per_layer")
    gen = torch_ref.load_generator(f)
    d = inputs(pipe, batch=batch, prompts=("large red circle moving right on a navy background",
                                           "small blue square on a forest"))
    jt, jv = jax_forward(pipe, d)
    with torch.no_grad():
      ids, mask = torch.from_numpy(d["ids"]).long(), torch.from_numpy(d["mask"])
      tt = gen.encode_text(ids, mask)
      tv = gen.dit(torch.from_numpy(d["x"]), torch.from_numpy(d["positions"]).long(),
                   torch.from_numpy(d["t"]), tt, mask)
    out[f"torch/{name}/text"] = rel_err(tt.numpy(), jt)
    out[f"torch/{name}/dit"] = rel_err(tv.numpy(), jv)
    s = serving.load_serving(serving.export_pipeline(pipe, tmp / f"{name}.zip"))
    st = s.call("encode_text", d["ids"], d["mask"])
    out[f"serving/{name}/text"] = rel_err(st, jt)
    out[f"serving/{name}/dit"] = rel_err(
        s.call("denoise", d["x"], d["positions"], d["t"], st, d["mask"]), jv)

  def vae_parity(name, codec, latent):
    save_vae(tmp / f"{name}.safetensors", codec.cfg, codec.params)
    dec = torch_vae.load_vae_decoder(tmp / f"{name}.safetensors")
    want = np.asarray(codec.decode(latent))
    with torch.no_grad():
      out[f"torch/{name}/decoder"] = rel_err(dec(torch.from_numpy(latent)).numpy(), want)
    exp = jax.export.deserialize(serving.export_decoder(codec, latent.shape[1:]).serialize())
    out[f"serving/{name}/decoder"] = rel_err(exp.call(latent), want)

  import jax
  gen_parity("world32", Pipeline.load(), batch=1)
  gen_parity("tiny_random", random_pipeline(), batch=2)
  gen_parity("tiny_random_loop_head", random_pipeline(
      "--config.model.scan_layers=False", "--config.model.head_hidden=16", seed=1), batch=2)
  rng = np.random.default_rng(0)
  vae_parity("world_vae", load_vae(""), rng.standard_normal((1, 3, 8, 8, 16)).astype(np.float32))
  cfg = vae_lib.VAEConfig(latent_channels=4, patch=2, widths=(8, 16), spatial_down=(True,),
                          temporal_down=(True,), blocks=1, refine=4)
  graphdef, params = nnx.split(vae_lib.VAE(cfg, rngs=nnx.Rngs(0)))
  vae_parity("tiny_random_vae", VAECodec(cfg=cfg, graphdef=graphdef, params=randomize(params)),
             rng.standard_normal((2, 2, 3, 3, 4)).astype(np.float32))
  print(json.dumps({"max_rel_err": {k: float(f"{v:.3g}") for k, v in out.items()},
                    "torch": torch.__version__, "jax": jax.__version__}))


if __name__ == "__main__":
  main()
