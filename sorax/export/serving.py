"""Serving export: the text encoder, the denoiser (DiT forward) and the latent decoder of a model
as StableHLO through `jax.export`, with a symbolic batch dimension, in one file.

The file is a zip (written to a temp path, then renamed):
  manifest.json            format "sorax.serving/1", each function's argument shapes/dtypes ("b"
                           is the symbolic batch), the canvas, patch, latent shape, prediction
                           type, sampler defaults, latent statistics, tokenizer hash, step
  encode_text.jaxexport    (ids int32 [b, L], mask bool [b, L]) -> text float32 [b, L, Tw]
  denoise.jaxexport        (x float32 [b, N, P], positions int32 [b, N, 3], t float32 [b],
                            text float32 [b, L, Tw], text_mask bool [b, L]) -> out float32
                           [b, N, P] (what the DiT predicts: x0 or velocity, manifest
                           "prediction"); a self-conditioned model (model.self_cond) takes a
                           sixth input, x0_prev float32 [b, N, P], the last clean estimate
                           (zeros at the first step)
  decode.jaxexport         (latent float32 [b, t, h, w, c]) -> video float32 [b, T', H, W, 3] in
                           [-1, 1] (the codec's decoder: the VAE decoder with the latent
                           statistics undone, or depth-to-space; T' >= frames, crop to frames)
  positions.npy            int32 [N, 3]: the (t, h, w) patch coordinates of the canvas

Weights are constants inside the modules, so `load_serving` + `jax.export.deserialize` run them
with JAX alone: no sorax model code, no Flax. N, L and the canvas are fixed at export time.
Lowered for CPU, CUDA and TPU by default (`platforms`). Constants live in the serialized module,
so this suits models well under protobuf's 2 GB limit (the world models are a few MB).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = "sorax.serving/1"
FUNCTIONS = ("encode_text", "denoise", "decode")
DTYPES = ("float16", "bfloat16", "float32")
# Lowered for every platform at once (one module, no device of each kind needed to export), so
# a file made on a laptop runs on a GPU or TPU server.
PLATFORMS = ("cpu", "cuda", "tpu")


class ServingError(ValueError):
  """A serving file that is missing, not a sorax serving file, or called with wrong shapes."""


def _spec(shape, dtype, scope):
  dims = jax.export.symbolic_shape(", ".join(str(d) for d in shape), scope=scope)
  return jax.ShapeDtypeStruct(dims, jnp.dtype(dtype))


def _export(fn, arg_specs, scope, platforms=PLATFORMS) -> jax.export.Exported:
  bad = sorted(set(platforms) - set(PLATFORMS))
  if bad or not platforms:
    raise ServingError(f"unknown platforms {bad or list(platforms)}; choose from "
                       f"{list(PLATFORMS)}")
  specs = [_spec(s, d, scope) for s, d in arg_specs]
  return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)


def _constants(params, dtype: str):
  """Params as numpy constants in `dtype` (embedded in the module), and a function that casts
  them back to the model's float32 inside the traced computation."""
  np_dtype = jnp.dtype(dtype)
  consts = jax.tree.map(lambda a: np.asarray(a).astype(np_dtype), params)
  return consts, lambda: jax.tree.map(lambda a: jnp.asarray(a).astype(jnp.float32), consts)


def export_functions(graphdef, params, codec, *, latent_shape, patch, text_len: int,
                     text_width: int, dtype: str = "float32",
                     platforms=PLATFORMS) -> dict[str, jax.export.Exported]:
  """The three serving functions of a Generator (`graphdef`, `params`) and its codec, for the
  canvas whose latent is `latent_shape` (t, h, w, c)."""
  from flax import nnx  # noqa: PLC0415 (export side only)

  from sorax import patchify as P  # noqa: PLC0415

  if dtype not in DTYPES:
    raise ServingError(f"unknown dtype {dtype!r}; choose from {list(DTYPES)}")
  consts, live = _constants(params, dtype)
  grid = P.grid_shape(latent_shape, patch)
  n, p = int(np.prod(grid)), P.token_dim(latent_shape[3], patch)
  scope = jax.export.SymbolicScope()

  def encode_text(ids, mask):
    return nnx.merge(graphdef, live()).encode_text(ids, mask)

  self_cond = nnx.merge(graphdef, params).dit.cfg.self_cond

  def denoise(x, positions, t, text, text_mask, x0_prev=None):
    """A self-conditioned model (model.self_cond) also takes the last clean estimate."""
    return nnx.merge(graphdef, live()).dit(x, positions, t, text, text_mask, x0_prev=x0_prev)

  L, Tw = text_len, text_width
  denoise_args = [(("b", n, p), "float32"), (("b", n, 3), "int32"), (("b",), "float32"),
                  (("b", L, Tw), "float32"), (("b", L), "bool")]
  if self_cond:
    denoise_args.append((("b", n, p), "float32"))
  return {
      "encode_text": _export(encode_text, [(("b", L), "int32"), (("b", L), "bool")], scope,
                             platforms),
      "denoise": _export(denoise, denoise_args, scope, platforms),
      "decode": export_decoder(codec, latent_shape, scope, platforms),
  }


def export_decoder(codec, latent_shape, scope=None, platforms=PLATFORMS) -> jax.export.Exported:
  """A codec's decode (the VAE decoder with its latent statistics undone, or depth-to-space) for
  latents [b, *latent_shape] with a symbolic batch b."""
  def decode(latent):
    return codec.decode(latent).astype(jnp.float32)
  return _export(decode, [(("b", *latent_shape), "float32")],
                 scope or jax.export.SymbolicScope(), platforms)


def _signature(exp: jax.export.Exported) -> dict[str, Any]:
  def one(a):
    return {"shape": [str(d) for d in a.shape], "dtype": str(a.dtype)}
  return {"in": [one(a) for a in exp.in_avals], "out": [one(a) for a in exp.out_avals]}


def export_pipeline(pipe, out: str | os.PathLike, *, frames: int | None = None,
                    height: int | None = None, width: int | None = None,
                    dtype: str = "float32", platforms=PLATFORMS) -> pathlib.Path:
  """Writes the serving file of a `sorax.sample.Pipeline` for a frames x height x width canvas
  (default: the run config's). -> the path."""
  cfg = pipe.cfg
  frames, height, width = frames or cfg.data.frames, height or cfg.data.height, \
      width or cfg.data.width
  latent_shape = pipe.latent_shape(frames, height, width)
  patch = tuple(cfg.model.patch)
  fns = export_functions(pipe.graphdef, pipe.params, pipe.codec, latent_shape=latent_shape,
                         patch=patch, text_len=cfg.data.text_len,
                         text_width=cfg.model.text_width, dtype=dtype, platforms=platforms)
  from sorax import patchify as P  # noqa: PLC0415
  from sorax.models import weights  # noqa: PLC0415
  manifest = {
      "format": FORMAT, "functions": {k: _signature(v) for k, v in fns.items()},
      "canvas": {"frames": frames, "height": height, "width": width},
      "latent_shape": list(latent_shape), "patch": list(patch), "text_len": cfg.data.text_len,
      "prediction": cfg.diffusion.get("prediction", "velocity"),
      "sample": cfg.sample.to_dict(), "latent_stats": pipe.latent_stats, "dtype": dtype,
      "tokenizer_sha256": weights.file_sha256(pipe.tokenizer.path), "step": pipe.step,
      "codec": cfg.codec.to_dict(), "platforms": list(platforms),
  }
  positions = P.positions(P.grid_shape(latent_shape, patch))
  files = {"manifest.json": json.dumps(manifest, indent=1).encode(),
           "positions.npy": _npy(positions)}
  files.update({f"{k}.jaxexport": bytes(v.serialize()) for k, v in fns.items()})
  return write_zip(out, files)


def _npy(a: np.ndarray) -> bytes:
  buf = io.BytesIO()
  np.save(buf, a)
  return buf.getvalue()


def write_zip(out: str | os.PathLike, files: dict[str, bytes]) -> pathlib.Path:
  out = pathlib.Path(out)
  if out.is_dir():
    raise ServingError(f"{out} is a directory; a serving export is one file")
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
  try:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
      for name, data in files.items():
        z.writestr(name, data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
  finally:
    tmp.unlink(missing_ok=True)
  return out


# ------------------------------------------------------------------------------ loading


@dataclasses.dataclass
class ServedModel:
  """A loaded serving file: `model.call("denoise", x, positions, t, text, text_mask)`."""
  manifest: dict[str, Any]
  functions: dict[str, jax.export.Exported]
  positions: np.ndarray
  source: str

  def call(self, name: str, *args):
    if name not in self.functions:
      raise ServingError(f"{self.source} has no function {name!r}; it has "
                         f"{sorted(self.functions)}")
    exp = self.functions[name]
    if len(args) != len(exp.in_avals):
      raise ServingError(f"{name} takes {len(exp.in_avals)} arguments, got {len(args)}")
    for i, (a, want) in enumerate(zip(args, exp.in_avals)):
      shape = np.shape(a)
      fixed = [(j, int(d)) for j, d in enumerate(want.shape) if isinstance(d, int)]
      if len(shape) != len(want.shape) or any(shape[j] != d for j, d in fixed):
        raise ServingError(f"{name}: argument {i} has shape {tuple(shape)}, the export wants "
                           f"{tuple(str(d) for d in want.shape)}")
    args = [jnp.asarray(a, want.dtype) for a, want in zip(args, exp.in_avals)]
    return exp.call(*args)


def load_serving(path: str | os.PathLike) -> ServedModel:
  """Reads a serving file written by `export_pipeline` (JAX only: no model code)."""
  p = pathlib.Path(path)
  if not p.is_file():
    raise ServingError(f"serving file {p} not found")
  try:
    with zipfile.ZipFile(p) as z:
      manifest = json.loads(z.read("manifest.json"))
      if manifest.get("format") != FORMAT:
        raise ServingError(f"{p} is not a sorax serving file (format "
                           f"{manifest.get('format')!r}, expected {FORMAT!r})")
      fns = {k: jax.export.deserialize(bytearray(z.read(f"{k}.jaxexport")))
             for k in manifest["functions"]}
      positions = np.load(io.BytesIO(z.read("positions.npy")))
  except (zipfile.BadZipFile, KeyError, ValueError) as e:
    if isinstance(e, ServingError):
      raise
    raise ServingError(f"{p} is not a sorax serving file: {e}") from e
  return ServedModel(manifest=manifest, functions=fns, positions=positions, source=str(p))
