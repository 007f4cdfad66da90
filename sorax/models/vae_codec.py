"""The trained causal VAE as the DiT's latent codec: loading, latent normalization, VAE files.

The DiT sees `(z - mean) / std` per latent channel; `mean`/`std` are measured on training clips
when a DiT run starts and saved with its checkpoints (meta "latent_stats"), so sampling decodes
with exactly the statistics the model was trained on.

A VAE comes from a VAE training workdir (its EMA weights) or a single `.msgpack` file written by
`save_vae` (what ships in sorax/assets/ for the demo).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from sorax.models import vae as vae_lib

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
DEFAULT_VAE = ASSETS / "vae_world.msgpack"


class VAELoadError(RuntimeError):
  pass


@dataclasses.dataclass(frozen=True, eq=False)
class VAECodec:
  """encode: [B, T, H, W, 3] in [-1, 1] -> normalized latent [B, t, h, w, c] (T padded to
  1 + r*k by repeating the last frame); decode: latent -> [B, 1 + r*(t-1), H, W, 3] (callers crop
  to the frames they asked for)."""
  cfg: vae_lib.VAEConfig
  graphdef: Any
  params: Any
  mean: tuple[float, ...] | None = None
  std: tuple[float, ...] | None = None
  source: str = ""

  @property
  def factors(self) -> tuple[int, int, int]:
    return (self.cfg.temporal, self.cfg.spatial, self.cfg.spatial)

  @property
  def channels(self) -> int:
    return self.cfg.latent_channels

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    s = self.cfg.spatial
    for name, n in (("height", height), ("width", width)):
      if n % s:
        raise ValueError(f"{name}={n} is not a multiple of the VAE's spatial factor {s}")
    return (vae_lib.latent_frames(frames, self.cfg.temporal), height // s, width // s,
            self.channels)

  def with_stats(self, mean, std) -> VAECodec:
    mean, std = tuple(map(float, mean)), tuple(map(float, std))
    if len(mean) != self.channels or len(std) != self.channels or min(std) <= 0:
      raise ValueError(f"latent stats need {self.channels} means and positive stds, got "
                       f"{len(mean)} and {std}")
    return dataclasses.replace(self, mean=mean, std=std)

  def _norm(self):
    if self.mean is None:
      return jnp.zeros((self.channels,)), jnp.ones((self.channels,))
    return jnp.asarray(self.mean), jnp.asarray(self.std)

  def raw_encode(self, video: jax.Array) -> jax.Array:
    model = nnx.merge(self.graphdef, self.params)
    return model.moments(vae_lib.pad_frames(video.astype(jnp.float32), self.cfg.temporal))[0]

  def normalize(self, latent: jax.Array) -> jax.Array:
    """raw_encode output (e.g. read from a latent cache) -> what `encode` returns."""
    mean, std = self._norm()
    return (latent - mean) / std

  def encode(self, video: jax.Array) -> jax.Array:
    return self.normalize(self.raw_encode(video))

  def decode(self, latent: jax.Array) -> jax.Array:
    mean, std = self._norm()
    model = nnx.merge(self.graphdef, self.params)
    return model.decoder(latent * std + mean)[0]

  def decode_pieces(self, latent: jax.Array, chunk: int = 4):
    """Constant-memory decode (not jittable as a whole): yields video pieces [B, n, H, W, 3]
    decoded `chunk` latent frames at a time with the causal conv cache; same frames as decode."""
    mean, std = self._norm()
    model = nnx.merge(self.graphdef, self.params)
    yield from vae_lib.decode_chunked(model, latent * std + mean, chunk=chunk)


def latent_stats(codec: VAECodec, videos: Iterable[np.ndarray]) -> dict[str, list[float]]:
  """Per-channel mean and std of the raw latents of uint8 videos [B, T, H, W, 3]."""
  enc = jax.jit(lambda v: codec.raw_encode(jnp.asarray(v, jnp.float32) / 127.5 - 1.0))
  n, s1, s2 = 0, 0.0, 0.0
  for v in videos:
    z = np.asarray(enc(v), np.float64).reshape(-1, codec.channels)
    n, s1, s2 = n + len(z), s1 + z.sum(0), s2 + (z * z).sum(0)
  if not n:
    raise ValueError("latent_stats: no videos")
  mean = s1 / n
  std = np.sqrt(np.maximum(s2 / n - mean * mean, 1e-12))
  return {"mean": mean.tolist(), "std": std.tolist()}


# ------------------------------------------------------------------------------ files


def vae_config_from_dict(d: dict[str, Any]) -> vae_lib.VAEConfig:
  fields = {f.name for f in dataclasses.fields(vae_lib.VAEConfig)}
  unknown = set(d) - fields
  if unknown:
    raise VAELoadError(f"unknown VAE config keys {sorted(unknown)}")
  d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
  return vae_lib.VAEConfig(**d)


SAFETENSORS_FORMAT = "sorax.vae/1"


def save_vae(path: str | os.PathLike, cfg: vae_lib.VAEConfig, params: Any,
             dtype: str = "float32") -> None:
  """One self-describing file: {"config": VAEConfig fields, "params": the weights}; atomic.
  `dtype` float16 halves the file (weights are cast back to the config's param_dtype on load).
  A `.safetensors` path writes safetensors instead: one tensor per parameter named by its path
  (`decoder.levels.0.blocks.0.conv1.kernel`, docs/export_layout.md), metadata `format`
  ("sorax.vae/1") and `config` (JSON); what the PyTorch reference reads."""
  if dtype not in ("float32", "float16"):
    raise ValueError(f"save_vae: dtype must be float32 or float16, got {dtype!r}")
  path = pathlib.Path(path)
  state = jax.tree.map(lambda x: np.asarray(x).astype(dtype), nnx.to_pure_dict(params))
  if path.suffix == ".safetensors":
    _save_safetensors(path, cfg, state)
    return
  blob = serialization.msgpack_serialize({"config": json.dumps(dataclasses.asdict(cfg)),
                                          "params": state})
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(blob)
  tmp.replace(path)


def _save_safetensors(path: pathlib.Path, cfg: vae_lib.VAEConfig, state) -> None:
  from flax import traverse_util  # noqa: PLC0415
  from safetensors.numpy import save_file  # noqa: PLC0415
  tensors = {".".join(map(str, k)): np.ascontiguousarray(v)
             for k, v in traverse_util.flatten_dict(state).items()}
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  try:
    save_file(tensors, str(tmp), metadata={"format": SAFETENSORS_FORMAT,
                                           "config": json.dumps(dataclasses.asdict(cfg))})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def _read_safetensors(p: pathlib.Path):
  from flax import traverse_util  # noqa: PLC0415
  from safetensors import safe_open  # noqa: PLC0415
  try:
    with safe_open(str(p), framework="numpy") as f:
      meta = f.metadata() or {}
      tensors = {k: f.get_tensor(k) for k in f.keys()}
  except Exception as e:  # safetensors' own error type on a bad header
    raise VAELoadError(f"VAE file {p} is not a safetensors file: {e}") from e
  if meta.get("format") != SAFETENSORS_FORMAT:
    raise VAELoadError(f"{p} is not a sorax VAE file (format {meta.get('format')!r}, expected "
                       f"{SAFETENSORS_FORMAT!r})")
  return {"config": meta.get("config", ""),
          "params": traverse_util.unflatten_dict({tuple(k.split(".")): v
                                                  for k, v in tensors.items()})}


@functools.lru_cache(maxsize=4)
def load_vae(path: str | os.PathLike = "") -> VAECodec:
  """A VAE file (.msgpack or .safetensors) or a VAE training workdir (EMA weights); "" = the shipped world VAE."""
  p = pathlib.Path(path) if str(path) else DEFAULT_VAE
  if p.is_dir():
    return _load_workdir(p)
  if not p.is_file():
    raise VAELoadError(f"VAE {p} not found (give a .msgpack file or a VAE training workdir)")
  try:
    blob = (_read_safetensors(p) if p.suffix == ".safetensors"
            else serialization.msgpack_restore(p.read_bytes()))
    cfg = vae_config_from_dict(json.loads(blob["config"]))
  except (ValueError, KeyError, TypeError) as e:
    raise VAELoadError(f"VAE file {p} is not a sorax VAE file: {e}") from e
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: vae_lib.VAE(cfg, rngs=nnx.Rngs(0))))
  try:
    nnx.replace_by_pure_dict(abstract, blob["params"])
  except (KeyError, ValueError) as e:
    raise VAELoadError(f"VAE file {p} does not match its config: {e}") from e
  params = jax.tree.map(lambda x: jnp.asarray(x, cfg.param_dtype), abstract)
  _check_shapes(p, graphdef, params, cfg)
  return VAECodec(cfg=cfg, graphdef=graphdef, params=params, source=str(p))


def _check_shapes(p, graphdef, params, cfg) -> None:
  want = nnx.split(nnx.eval_shape(lambda: vae_lib.VAE(cfg, rngs=nnx.Rngs(0))))[1]
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(params)):
    if a.shape != b.shape:
      raise VAELoadError(f"VAE file {p}: a weight has shape {b.shape}, its config wants {a.shape}")


def _load_workdir(workdir: pathlib.Path) -> VAECodec:
  from sorax.train.checkpoint import restore_ema  # noqa: PLC0415 (train depends on models)
  from sorax.train.vae_trainer import make_model_fn, vae_config  # noqa: PLC0415

  def make(train_cfg, meta):
    del meta
    if train_cfg.get("kind") != "vae":
      raise VAELoadError(f"{workdir} is not a VAE training run (config kind "
                         f"{train_cfg.get('kind', 'dit')!r})")
    return vae_config(train_cfg), make_model_fn(train_cfg)

  step, graphdef, params, _, cfg = restore_ema(workdir, make)
  model = nnx.merge(graphdef, params)
  if not isinstance(model, vae_lib.VAE):  # a VAEGAN run: keep the VAE, drop the discriminator
    graphdef, params = nnx.split(model.vae)
  return VAECodec(cfg=cfg, graphdef=graphdef, params=params, source=f"{workdir}@{step}")
