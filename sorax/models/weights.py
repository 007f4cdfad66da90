"""Weights-only model files: a Generator's (EMA) parameters in safetensors, with what is needed
to sample from them (the run config, vocabulary size, latent statistics) in the metadata.

No optimizer state and nothing from sorax/train/: `sorax sample`, `sorax eval` and the demo
load a model with this alone, and so can a user without the training stack.

Layout: one tensor per parameter, named by its path in the model joined with "." (for example
`dit.blocks.attn.wq`; the DiT's blocks are stacked on a leading `layers` axis). Metadata keys
(all strings, as safetensors wants): `format` ("sorax.generator/1"), `config` (the run config
as JSON), `vocab_size`, `latent_stats` (JSON {"mean", "std"} or ""), `tokenizer_sha256`, `step`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx, traverse_util

from sorax.models.generator import Generator, generator_config

FORMAT = "sorax.generator/1"
SHIPPED = pathlib.Path(__file__).resolve().parent.parent / "assets" / "world32.safetensors"
DTYPES = {"float16": np.float16, "bfloat16": jnp.bfloat16, "float32": np.float32}


class WeightsError(ValueError):
  """A weights file that is missing, not a sorax generator file, or does not fit its config."""


@dataclasses.dataclass
class LoadedGenerator:
  cfg: ml_collections.ConfigDict      # the run config it was trained with (locked)
  graphdef: nnx.GraphDef
  params: Any                         # nnx.State, float32
  vocab_size: int
  latent_stats: dict | None
  tokenizer_sha256: str
  step: int
  source: str


def file_sha256(path: str | os.PathLike) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _flat(params) -> dict[str, np.ndarray]:
  pure = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
  return {".".join(map(str, k)): np.asarray(v) for k, v in
          traverse_util.flatten_dict(pure).items()}


def save_generator(path: str | os.PathLike, params, *, config: ml_collections.ConfigDict | dict,
                   vocab_size: int, latent_stats: dict | None = None, tokenizer_sha256: str = "",
                   step: int = 0, dtype: str = "float16") -> pathlib.Path:
  """Writes `params` (an nnx.State or pure dict of a Generator) to `path` atomically (a temp
  file beside it, then a rename). -> the path."""
  from safetensors.numpy import save_file  # noqa: PLC0415 (optional until a file is written)

  if dtype not in DTYPES:
    raise WeightsError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
  cfg_json = json.dumps(config.to_dict() if isinstance(config, ml_collections.ConfigDict)
                        else config)
  tensors = {k: np.ascontiguousarray(v.astype(DTYPES[dtype])) for k, v in _flat(params).items()}
  meta = {"format": FORMAT, "config": cfg_json, "vocab_size": str(int(vocab_size)),
          "latent_stats": json.dumps(latent_stats) if latent_stats else "",
          "tokenizer_sha256": tokenizer_sha256, "step": str(int(step))}
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
  try:
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # a model file to share, not a secret
    os.replace(tmp, out)
  finally:
    tmp.unlink(missing_ok=True)
  return out


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
  from safetensors import safe_open  # noqa: PLC0415
  p = pathlib.Path(path)
  if not p.is_file():
    raise WeightsError(f"weights file {p} not found")
  try:
    with safe_open(str(p), framework="numpy") as f:
      meta = f.metadata() or {}
  except Exception as e:  # safetensors raises its own SafetensorError on a bad header
    raise WeightsError(f"{p} is not a safetensors file: {e}") from e
  if meta.get("format") != FORMAT:
    raise WeightsError(f"{p} is not a sorax generator file (format {meta.get('format')!r}, "
                       f"expected {FORMAT!r})")
  return meta


def load_generator(path: str | os.PathLike = SHIPPED) -> LoadedGenerator:
  """Reads a weights file written by `save_generator` into a Generator's graph and float32
  params. Raises WeightsError naming the file on any mismatch."""
  from safetensors.numpy import load_file  # noqa: PLC0415

  p = pathlib.Path(path)
  meta = read_metadata(p)
  try:
    cfg = ml_collections.ConfigDict(json.loads(meta["config"]))
    vocab = int(meta["vocab_size"])
    stats = json.loads(meta["latent_stats"]) if meta.get("latent_stats") else None
    step = int(meta.get("step", "0"))
  except (KeyError, ValueError) as e:
    raise WeightsError(f"weights file {p} has bad metadata: {e}") from e
  cfg.lock()
  gcfg = generator_config(cfg, vocab)
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Generator(gcfg, rngs=nnx.Rngs(0))))
  shapes = {".".join(map(str, k)): v.shape for k, v in
            traverse_util.flatten_dict(nnx.to_pure_dict(abstract)).items()}
  tensors = load_file(str(p))
  missing = sorted(set(shapes) - set(tensors))
  extra = sorted(set(tensors) - set(shapes))
  if missing or extra:
    raise WeightsError(f"weights file {p} does not fit its config: missing {missing[:5]}, "
                       f"unexpected {extra[:5]}")
  for k, shape in shapes.items():
    if tuple(tensors[k].shape) != tuple(shape):
      raise WeightsError(f"weights file {p}: {k} has shape {tuple(tensors[k].shape)}, its config "
                         f"wants {tuple(shape)}")
  pdt = jnp.dtype(cfg.model.param_dtype)
  pure = traverse_util.unflatten_dict(
      {tuple(_key(part) for part in k.split(".")): jnp.asarray(v, pdt) for k, v in tensors.items()})
  nnx.replace_by_pure_dict(abstract, pure)
  return LoadedGenerator(cfg=cfg, graphdef=graphdef, params=abstract, vocab_size=vocab,
                         latent_stats=stats, tokenizer_sha256=meta.get("tokenizer_sha256", ""),
                         step=step, source=str(p))


def _key(part: str):
  """Path parts that were list indices (nnx.List) come back as ints."""
  return int(part) if part.isdigit() else part
