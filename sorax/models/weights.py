"""Weights-only model files: a Generator's (EMA) parameters in safetensors (or an Orbax
directory), with what is needed to sample from them (the run config, vocabulary size, latent
statistics) in the metadata.

No optimizer state and nothing from sorax/train/: `sorax sample`, `sorax eval` and the demo
load a model with this alone, and so can a user without the training stack.

Layout (docs/export_layout.md has every name and shape): one tensor per parameter, named by its
path in the model joined with "." (for example `dit.blocks.attn.wq`). Two layouts
(sorax/models/weights_layout.py): `stacked` (format "sorax.generator/1", the shipped file: the
DiT's blocks on a leading `layers` axis, as a scanned model holds them) and `per_layer` (format
"sorax.generator/2", what `sorax export` writes: `dit.blocks.<i>.attn.wq`). `load_generator`
reads both into the model's own layout. Metadata keys (all strings, as safetensors wants):
`format`, `config` (the run config as JSON), `vocab_size`, `latent_stats` (JSON {"mean", "std"}
or ""), `tokenizer_sha256`, `step`. An Orbax export is a directory: `params/` (an Orbax PyTree
checkpoint of the per-layer tensors, nested by name) and `sorax_generator.json` (the metadata).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx, traverse_util

from sorax.models import weights_layout as layout_lib
from sorax.models.generator import Generator, generator_config

FORMAT = layout_lib.FORMAT_STACKED  # what older files (and the shipped one) say
FORMATS = layout_lib.FORMATS        # format -> layout, every one load_generator reads
SHIPPED = pathlib.Path(__file__).resolve().parent.parent / "assets" / "world32.safetensors"
DTYPES = {"float16": np.float16, "bfloat16": jnp.bfloat16, "float32": np.float32}
ORBAX_META = "sorax_generator.json"  # marks a directory as an Orbax generator export


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


def flat_tensors(params) -> dict[str, np.ndarray]:
  pure = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
  return {".".join(map(str, k)): np.asarray(v) for k, v in
          traverse_util.flatten_dict(pure).items()}


def is_orbax_export(path: str | os.PathLike) -> bool:
  return (pathlib.Path(path) / ORBAX_META).is_file()


def export_tensors(params, *, layout: str = "per_layer", dtype: str = "float32"
                   ) -> dict[str, np.ndarray]:
  """A Generator's params (nnx.State or pure dict) as named tensors in `layout`, cast to
  `dtype`: what a weights file holds."""
  if dtype not in DTYPES:
    raise WeightsError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
  if layout not in layout_lib.LAYOUTS:
    raise WeightsError(f"unknown layout {layout!r}; choose from {sorted(layout_lib.LAYOUTS)}")
  flat = flat_tensors(params)
  if layout == "per_layer":
    flat = layout_lib.unstack(flat)
  return {k: np.ascontiguousarray(v.astype(DTYPES[dtype])) for k, v in flat.items()}


def save_generator(path: str | os.PathLike, params, *, config: ml_collections.ConfigDict | dict,
                   vocab_size: int, latent_stats: dict | None = None, tokenizer_sha256: str = "",
                   step: int = 0, dtype: str = "float16", layout: str = "stacked",
                   format: str = "safetensors") -> pathlib.Path:  # noqa: A002 (the CLI's name)
  """Writes `params` (an nnx.State or pure dict of a Generator) to `path` atomically (a temp
  path beside it, then a rename). `layout`: "stacked" (as the model holds them; the default, for
  older readers) or "per_layer" (`sorax export`). `format`: "safetensors" (one file) or "orbax"
  (a directory; always per-layer). -> the path."""
  if format not in ("safetensors", "orbax"):
    raise WeightsError(f"unknown weights format {format!r}; choose from ['orbax', 'safetensors']")
  if format == "orbax":
    layout = "per_layer"
  tensors = export_tensors(params, layout=layout, dtype=dtype)
  cfg_json = json.dumps(config.to_dict() if isinstance(config, ml_collections.ConfigDict)
                        else config)
  meta = {"format": layout_lib.LAYOUTS[layout], "config": cfg_json,
          "vocab_size": str(int(vocab_size)),
          "latent_stats": json.dumps(latent_stats) if latent_stats else "",
          "tokenizer_sha256": tokenizer_sha256, "step": str(int(step))}
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
  if format == "orbax":
    return _save_orbax(out, tmp, tensors, meta)
  if out.is_dir():
    raise WeightsError(f"{out} is a directory; a safetensors export is one file")
  write_safetensors(out, tmp, tensors, meta)
  return out


def write_safetensors(out: pathlib.Path, tmp: pathlib.Path, tensors, meta) -> None:
  """Writes to `tmp`, then renames onto `out`: a reader never sees half a file."""
  from safetensors.numpy import save_file  # noqa: PLC0415 (optional until a file is written)
  try:
    save_file(tensors, str(tmp), metadata=meta)
    os.chmod(tmp, 0o644)  # a model file to share, not a secret
    os.replace(tmp, out)
  finally:
    tmp.unlink(missing_ok=True)


def _save_orbax(out: pathlib.Path, tmp: pathlib.Path, tensors, meta) -> pathlib.Path:
  import orbax.checkpoint as ocp  # noqa: PLC0415
  if out.exists() and not is_orbax_export(out):
    raise WeightsError(f"{out} exists and is not a sorax Orbax export; not overwriting it")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    tmp.mkdir()
    tree = traverse_util.unflatten_dict({tuple(k.split(".")): v for k, v in tensors.items()})
    ocp.PyTreeCheckpointer().save(str((tmp / "params").resolve()), tree)
    (tmp / ORBAX_META).write_text(json.dumps(meta, indent=1))
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
      os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out


# Sampling settings a file's `sample` block may gain after it was written (the config's
# `sample` block; older files lack the later ones).
SAMPLE_SETTINGS = ("steps", "sampler", "cfg", "seed", "eta", "eta_late", "guidance_interval",
                   "guide", "best_of", "judge", "time_shift", "best_of_stop", "best_of_min")


def set_sample_defaults(path: str | os.PathLike, **sample) -> pathlib.Path:
  """Rewrites the sampling defaults (`sample.cfg`, `sample.steps`, ...) stored in a safetensors
  generator file's config, in place and atomically; the tensors are copied bit for bit. For a
  setting measured better after the file was written (BUILD_NOTES: CFG 2 for the shipped v7)."""
  from safetensors.numpy import load_file  # noqa: PLC0415
  p = pathlib.Path(path)
  meta = read_metadata(p)
  if p.is_dir():
    raise WeightsError(f"{p}: sampling defaults can be rewritten in a safetensors file only")
  cfg = json.loads(meta["config"])
  unknown = sorted(set(sample) - set(cfg.get("sample", {})) - set(SAMPLE_SETTINGS))
  if unknown:
    raise WeightsError(f"{p}: unknown sample settings {unknown}; the file has "
                       f"{sorted(cfg.get('sample', {}))}")
  cfg["sample"].update(sample)
  meta = dict(meta, config=json.dumps(cfg))
  write_safetensors(p, p.with_name(f".{p.name}.tmp-{os.getpid()}"), load_file(str(p)), meta)
  return p


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
  p = pathlib.Path(path)
  if p.is_dir():
    meta = _read_orbax_meta(p)
  elif not p.is_file():
    raise WeightsError(f"weights file {p} not found")
  else:
    from safetensors import safe_open  # noqa: PLC0415
    try:
      with safe_open(str(p), framework="numpy") as f:
        meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own SafetensorError on a bad header
      raise WeightsError(f"{p} is not a safetensors file: {e}") from e
  if meta.get("format") not in FORMATS:
    raise WeightsError(f"{p} is not a sorax generator file (format {meta.get('format')!r}, "
                       f"expected one of {sorted(FORMATS)})")
  return meta


def _read_orbax_meta(p: pathlib.Path) -> dict[str, str]:
  if not is_orbax_export(p):
    raise WeightsError(f"{p} is a directory without {ORBAX_META}: not a sorax Orbax export")
  try:
    meta = json.loads((p / ORBAX_META).read_text())
  except ValueError as e:
    raise WeightsError(f"{p / ORBAX_META} is not JSON: {e}") from e
  if not isinstance(meta, dict):
    raise WeightsError(f"{p / ORBAX_META} is not a JSON object")
  return meta


def _read_tensors(p: pathlib.Path) -> dict[str, np.ndarray]:
  if p.is_dir():
    import orbax.checkpoint as ocp  # noqa: PLC0415
    try:
      tree = ocp.PyTreeCheckpointer().restore(str((p / "params").resolve()))
    except Exception as e:  # orbax raises many kinds on a broken directory
      raise WeightsError(f"Orbax export {p}: cannot read params/: {e}") from e
    return {".".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}
  from safetensors.numpy import load_file  # noqa: PLC0415
  return load_file(str(p))


def load_generator(path: str | os.PathLike = SHIPPED) -> LoadedGenerator:
  """Reads a weights file written by `save_generator` (either layout, safetensors or Orbax)
  into a Generator's graph and float32 params in the model's own layout. Raises WeightsError
  naming the file on any mismatch."""
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
  model_shapes = {".".join(map(str, k)): v.shape for k, v in
                  traverse_util.flatten_dict(nnx.to_pure_dict(abstract)).items()}
  # Compare names and shapes per layer, whatever the file's and the model's layouts.
  shapes = {k: tuple(v[1:]) if layout_lib.is_stacked(k) else tuple(v)
            for k, v in model_shapes.items()}
  shapes = {n: s for k, s in shapes.items() for n in _per_layer_names(k, model_shapes[k])}
  tensors = layout_lib.unstack(_read_tensors(p))
  missing = sorted(set(shapes) - set(tensors))
  extra = sorted(set(tensors) - set(shapes))
  if missing or extra:
    raise WeightsError(f"weights file {p} does not fit its config: missing {missing[:5]}, "
                       f"unexpected {extra[:5]}")
  for k, shape in shapes.items():
    if tuple(tensors[k].shape) != tuple(shape):
      raise WeightsError(f"weights file {p}: {k} has shape {tuple(tensors[k].shape)}, its config "
                         f"wants {tuple(shape)}")
  if any(layout_lib.is_stacked(k) for k in model_shapes):
    tensors = layout_lib.stack(tensors, gcfg.dit.depth)
  pdt = jnp.dtype(cfg.model.param_dtype)
  pure = traverse_util.unflatten_dict(
      {tuple(_key(part) for part in k.split(".")): jnp.asarray(v, pdt) for k, v in tensors.items()})
  nnx.replace_by_pure_dict(abstract, pure)
  return LoadedGenerator(cfg=cfg, graphdef=graphdef, params=abstract, vocab_size=vocab,
                         latent_stats=stats, tokenizer_sha256=meta.get("tokenizer_sha256", ""),
                         step=step, source=str(p))


def _per_layer_names(name: str, shape) -> list[str]:
  if not layout_lib.is_stacked(name):
    return [name]
  rest = name[len(layout_lib.BLOCKS):]
  return [f"{layout_lib.BLOCKS}{i}.{rest}" for i in range(shape[0])]


def _key(part: str):
  """Path parts that were list indices (nnx.List) come back as ints."""
  return int(part) if part.isdigit() else part
