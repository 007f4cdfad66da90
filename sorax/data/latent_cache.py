"""Latent cache: encode a dataset once into ArrayRecord shards that grain reads at random.

Why: the codec is fixed while the DiT trains, so encoding every clip on every step spends
accelerator time (for the learned VAE, most of it) recomputing the same latents. Encoding once,
storing each clip's latent beside all its captions, and training from the cache makes a step cost
only the DiT, and lets the caption level be redrawn per example per epoch.

Layout of a cache directory:
  cache.json                               manifest: count, latent shape/dtype, shards, meta,
                                           per-channel latent mean/std, caption levels
  latents-00000-of-00003.array_record ...  one record per clip, in the order written

A record is msgpack (flax.serialization, no pickle: a cache from elsewhere cannot run code) of
  {"latent": float16|float32 [t, h, w, c], "captions": {level: str}, "spec": str (JSON or "")}.
Shards are written with group_size 1, which grain's ArrayRecordDataSource needs for cheap random
access (one record per chunk).

Public API:
  write_latent_cache(out_dir, examples, encode_fn, ...)   -> manifest dict
  LatentCacheSource(path)                                 random access: index -> record dict
  latent_dataset(path, tokenizer, ...)                    grain IterDataset of training batches
  cache_world(out_dir, data_cfg, encode_fn, ...)          render world clips and cache them
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter
from flax import serialization
from tqdm.auto import tqdm

from sorax.data import world
from sorax.data.pipeline import WorldSource

__all__ = [
  "LatentCacheSource",
  "cache_world",
  "latent_dataset",
  "write_latent_cache",
]

MANIFEST = "cache.json"
FORMAT_VERSION = 1
SHARD_PREFIX = "latents"
# group_size:1 -> one record per chunk, so a random read decompresses only that record; grain's
# ArrayRecordDataSource warns about anything else. Compression stays at the default (zstd:3).
WRITER_OPTIONS = "group_size:1"
DTYPES = ("float32", "float16")


def _shard_name(index: int, count: int) -> str:
  return f"{SHARD_PREFIX}-{index:05d}-of-{count:05d}.array_record"


def _spec_str(spec: Any) -> str:
  """A clip's spec as a JSON string: str kept, dict dumped, objects with to_json() dumped."""
  if spec is None:
    return ""
  if isinstance(spec, str):
    return spec
  if isinstance(spec, Mapping):
    return json.dumps(dict(spec), sort_keys=True)
  if hasattr(spec, "to_json"):
    return json.dumps(spec.to_json(), sort_keys=True)
  raise TypeError(f"spec must be a JSON str, a dict or have to_json(), got {type(spec).__name__}")


def _check_example(i: int, ex: Any) -> tuple[np.ndarray, dict[str, str], str]:
  if not isinstance(ex, Mapping) or "video" not in ex or "captions" not in ex:
    raise ValueError(f"example {i}: need a dict with 'video' and 'captions', got "
                     f"{sorted(ex) if isinstance(ex, Mapping) else type(ex).__name__}")
  video = np.asarray(ex["video"])
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f"example {i}: video must be uint8 [T, H, W, 3], got {video.dtype} "
                     f"{list(video.shape)}")
  captions = ex["captions"]
  if (not isinstance(captions, Mapping) or not captions
      or not all(isinstance(k, str) and isinstance(v, str) for k, v in captions.items())):
    raise ValueError(f"example {i}: captions must be a non-empty dict of level -> str, "
                     f"got {captions!r}")
  return video, dict(captions), _spec_str(ex.get("spec"))


class _Stats:
  """Per-channel mean/variance over every latent position, merged batch by batch (Chan et al.),
  in float64 so millions of positions do not lose precision."""

  def __init__(self):
    self.n, self.mean, self.m2 = 0, None, None

  def update(self, x: np.ndarray):  # x [..., c]
    x = x.reshape(-1, x.shape[-1]).astype(np.float64)  # [n_b, c]
    nb, mb = x.shape[0], x.mean(0)
    m2b = ((x - mb) ** 2).sum(0)
    if self.mean is None:
      self.n, self.mean, self.m2 = nb, mb, m2b
      return
    n = self.n + nb
    delta = mb - self.mean
    self.mean = self.mean + delta * nb / n
    self.m2 = self.m2 + m2b + delta ** 2 * self.n * nb / n
    self.n = n

  def as_dict(self) -> dict[str, Any]:
    var = self.m2 / max(self.n, 1)
    all_mean = float(self.mean.mean())
    all_var = float((var + (self.mean - all_mean) ** 2).mean())  # channels have equal counts
    return {"mean": self.mean.tolist(), "std": np.sqrt(var).tolist(), "positions": int(self.n),
            "mean_all": all_mean, "std_all": float(np.sqrt(all_var))}


def _batches(examples: Iterable[Mapping[str, Any]], batch_size: int):
  """Groups examples: yields (videos uint8 [b, T, H, W, 3], [(captions, spec)] * b)."""
  videos, extras = [], []
  for i, ex in enumerate(examples):
    video, captions, spec = _check_example(i, ex)
    if videos and video.shape != videos[0].shape:
      raise ValueError(f"example {i}: video shape {list(video.shape)} differs from "
                       f"{list(videos[0].shape)}; a cache holds one clip shape")
    videos.append(video)
    extras.append((captions, spec))
    if len(videos) == batch_size:
      yield np.stack(videos), extras
      videos, extras = [], []
  if videos:
    yield np.stack(videos), extras


def _encode(encode_fn: Callable, videos: np.ndarray, batch_size: int) -> np.ndarray:
  """uint8 [b, T, H, W, 3] -> float32 latents [b, t, h, w, c].

  A short last batch is padded to `batch_size` (repeating its last clip) so a jitted encode_fn
  sees one shape and compiles once; the padding's latents are dropped.
  """
  b = videos.shape[0]
  if b < batch_size:
    videos = np.concatenate([videos, np.repeat(videos[-1:], batch_size - b, axis=0)])
  x = videos.astype(np.float32) / 127.5 - 1.0  # [B, T, H, W, 3] in [-1, 1] (codec.from_pixels)
  lat = np.asarray(encode_fn(x), dtype=np.float32)
  if lat.ndim != 5 or lat.shape[0] != batch_size:
    raise ValueError(f"encode_fn must map [B, T, H, W, 3] to [B, t, h, w, c] with B = "
                     f"{batch_size}; got {list(lat.shape)}")
  if not np.isfinite(lat).all():
    raise ValueError("encode_fn returned non-finite latents")
  return lat[:b]


def _prepare_out_dir(out: pathlib.Path, overwrite: bool) -> None:
  if out.exists() and not out.is_dir():
    raise FileExistsError(f"latent cache path {out} exists and is not a directory")
  if out.is_dir() and any(out.iterdir()) and not overwrite:
    raise FileExistsError(f"latent cache directory {out} exists and is not empty; pass "
                          "overwrite=True to replace it, or choose another directory")
  out.parent.mkdir(parents=True, exist_ok=True)


def _publish(tmp: pathlib.Path, out: pathlib.Path) -> None:
  """Renames the finished temp dir onto `out`; a replaced old cache is removed only after."""
  old = None
  if out.is_dir():
    if any(out.iterdir()):
      old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
      os.replace(out, old)
    else:
      out.rmdir()
  os.replace(tmp, out)
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def write_latent_cache(out_dir: str | os.PathLike, examples: Iterable[Mapping[str, Any]],
                       encode_fn: Callable[[Any], Any], *, batch_size: int = 16,
                       shard_size: int = 1024, dtype: str = "float32",
                       meta: Mapping[str, Any] | None = None, overwrite: bool = False,
                       progress: bool = True, total: int | None = None) -> dict[str, Any]:
  """Encodes `examples` with `encode_fn` and writes them as a latent cache in `out_dir`.

  examples: dicts {"video": uint8 [T, H, W, 3], "captions": {level: str}, "spec": str
    (optional; a dict or an object with to_json() is dumped to JSON)}, all of one video shape.
  encode_fn: float32 [B, T, H, W, 3] in [-1, 1] -> latents [B, t, h, w, c]; usually jitted
    (e.g. `jax.jit(SpaceToDepthCodec().encode)`). It always sees B = batch_size.
  shard_size: records per ArrayRecord shard (many shards let hosts and workers read in parallel).
  dtype: "float32" or "float16" for the stored latents (float16 halves disk and read bandwidth;
    the dataset casts back to float32). Stats are computed on the stored values.
  meta: JSON-serializable dict kept in the manifest (codec config, checkpoint path, source ...),
    so a cache says what produced it.
  total: the number of examples, if known, for the progress bar only.

  Everything is written into a temp dir beside `out_dir` and renamed onto it at the end, so a
  failure (including one raised by encode_fn) leaves no half-written cache. Returns the manifest.
  """
  out = pathlib.Path(out_dir)
  if batch_size < 1 or shard_size < 1:
    raise ValueError(f"batch_size ({batch_size}) and shard_size ({shard_size}) must be >= 1")
  if dtype not in DTYPES:
    raise ValueError(f"dtype {dtype!r} not supported; choose from {DTYPES}")
  meta = dict(meta or {})
  try:  # fail before any encoding, not after hours of it
    json.dumps(meta)
  except TypeError as e:
    raise TypeError(f"meta must be JSON-serializable: {e}") from None
  _prepare_out_dir(out, overwrite)

  tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
  tmp.mkdir()
  writer = None
  try:
    stats, shards = _Stats(), []
    in_shard, count = 0, 0
    latent_shape, video_shape, levels = None, None, None
    with tqdm(total=total, disable=not progress, desc="cache", unit="clip") as bar:
      for videos, extras in _batches(examples, batch_size):
        lat = _encode(encode_fn, videos, batch_size).astype(dtype)  # [b, t, h, w, c]
        if not np.isfinite(lat).all():
          raise ValueError(f"latents overflow {dtype} (|x| > 65504); store them as float32")
        if latent_shape is None:
          latent_shape, video_shape = list(lat.shape[1:]), list(videos.shape[1:])
        elif list(lat.shape[1:]) != latent_shape:
          raise ValueError(f"encode_fn changed latent shape: {list(lat.shape[1:])} after "
                           f"{latent_shape}")
        stats.update(lat)
        for latent, (captions, spec) in zip(lat, extras):
          if writer is None:
            shards.append(f"{SHARD_PREFIX}-{len(shards):05d}.partial")
            writer = ArrayRecordWriter(str(tmp / shards[-1]), WRITER_OPTIONS)
          writer.write(serialization.msgpack_serialize(
              {"latent": latent, "captions": captions, "spec": spec}))
          levels = set(captions) if levels is None else levels & set(captions)
          count, in_shard = count + 1, in_shard + 1
          if in_shard == shard_size:
            writer.close()
            writer, in_shard = None, 0
        bar.update(len(extras))
    if writer is not None:
      writer.close()
      writer = None
    if count == 0:
      raise ValueError("no examples to cache")
    if not levels:
      raise ValueError("the examples share no caption level; a training batch could not pick one")

    # Shard count is known only now (examples may be a generator): name the shards at the end.
    names = [_shard_name(i, len(shards)) for i in range(len(shards))]
    for partial, name in zip(shards, names):
      os.replace(tmp / partial, tmp / name)
    manifest = {
        "format": "sorax.latent_cache", "version": FORMAT_VERSION, "count": count,
        "latent_shape": latent_shape, "dtype": dtype, "video_shape": video_shape,
        "shard_size": shard_size, "shards": names, "caption_levels": sorted(levels),
        "stats": stats.as_dict(), "meta": meta}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _publish(tmp, out)
  except BaseException:
    if writer is not None:
      writer.close()
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return manifest


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
  """The manifest of the cache at `path`; errors name the path and what is wrong."""
  root = pathlib.Path(path)
  if not root.is_dir():
    raise FileNotFoundError(f"latent cache directory {root} not found")
  mpath = root / MANIFEST
  if not mpath.is_file():
    raise FileNotFoundError(f"latent cache {root} has no {MANIFEST}: not a cache, or its "
                            "writing did not finish")
  try:
    manifest = json.loads(mpath.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f"latent cache manifest {mpath} is corrupt: {e}") from None
  need = ("count", "latent_shape", "dtype", "shards", "caption_levels")
  if not isinstance(manifest, dict) or any(k not in manifest for k in need):
    raise ValueError(f"latent cache manifest {mpath} is corrupt: needs keys {list(need)}")
  if manifest.get("version", 0) > FORMAT_VERSION:
    raise ValueError(f"latent cache {root} has format version {manifest['version']}; this "
                     f"sorax reads up to {FORMAT_VERSION}")
  missing = [s for s in manifest["shards"] if not (root / s).is_file()]
  if missing:
    raise FileNotFoundError(f"latent cache {root} is missing shard files {missing}")
  return manifest


class LatentCacheSource:
  """Random-access records of a latent cache:
  index -> {"latent": np.ndarray [t, h, w, c] (stored dtype), "captions": {level: str},
  "spec": str}.

  Picklable (grain's ArrayRecordDataSource reopens files in each worker process).
  """

  def __init__(self, path: str | os.PathLike):
    self.path = pathlib.Path(path)
    self.manifest = read_manifest(self.path)
    self.latent_shape = tuple(self.manifest["latent_shape"])
    self.caption_levels = tuple(self.manifest["caption_levels"])
    try:
      self._records = grain.sources.ArrayRecordDataSource(
          [str(self.path / s) for s in self.manifest["shards"]])
    except RuntimeError as e:  # array_record raises RuntimeError for unreadable files
      raise ValueError(f"latent cache {self.path}: cannot open shards: {e}") from None
    if len(self._records) != self.manifest["count"]:
      raise ValueError(f"latent cache {self.path}: shards hold {len(self._records)} records but "
                       f"{MANIFEST} says {self.manifest['count']}")

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"latent cache index {index} out of range [0, {len(self)})")
    rec = serialization.msgpack_restore(self._records[index])
    latent = np.asarray(rec["latent"])
    if latent.shape != self.latent_shape:
      raise ValueError(f"latent cache {self.path}: record {index} has latent shape "
                       f"{list(latent.shape)}, manifest says {list(self.latent_shape)}")
    return {"latent": latent, "captions": dict(rec["captions"]), "spec": rec.get("spec", "")}

  def __repr__(self) -> str:
    return (f"LatentCacheSource({str(self.path)!r}, n={len(self)}, "
            f"latent={list(self.latent_shape)}, {self.manifest['dtype']})")


class TokenizeCaption(grain.transforms.RandomMap):
  """Draws a caption level with `weights` (grain seeds the rng from the pipeline seed and the
  element's index, so the draw is deterministic yet differs per epoch), then tokenizes it.

  {latent [t, h, w, c], captions} -> {latent float32 [t, h, w, c], ids int32 [L], mask bool [L]}:
  the keys of pipeline.Tokenize with "latent" in place of "video".
  """

  def __init__(self, tokenizer, max_len: int, levels: Sequence[str], weights: np.ndarray):
    self.tokenizer, self.max_len = tokenizer, max_len
    self.levels, self.weights = tuple(levels), weights

  def random_map(self, ex: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    level = self.levels[rng.choice(len(self.levels), p=self.weights)]
    ids, mask = self.tokenizer.encode([ex["captions"][level]], self.max_len)
    return {"latent": np.asarray(ex["latent"], np.float32), "ids": ids[0], "mask": mask[0]}


def latent_dataset(path: str | os.PathLike, tokenizer, *, text_len: int, batch_size: int,
                   caption_levels: Sequence[str], caption_weights: Sequence[float] | None,
                   seed: int, shard_index: int = 0, shard_count: int = 1,
                   num_epochs: int | None = None, shuffle: bool = True,
                   worker_count: int = 0) -> grain.IterDataset:
  """Batches {latent float32 [B, t, h, w, c], ids int32 [B, L], mask bool [B, L]} from a cache.

  The drop-in for pipeline.world_dataset when training from cached latents: same "ids"/"mask",
  "latent" (already encoded) instead of "video". As there, `batch_size` is global and each host
  reads the slice `shard_index::shard_count` of the records and builds B = batch_size //
  shard_count. Records are shuffled with `seed`, differently each epoch; `num_epochs=None`
  repeats forever. The iterator's get_state/set_state make resumption exact.
  """
  if batch_size % shard_count:
    raise ValueError(f"batch_size {batch_size} is not divisible by {shard_count} hosts")
  source = LatentCacheSource(path)
  levels = tuple(caption_levels)
  unknown = set(levels) - set(source.caption_levels)
  if not levels or unknown:
    raise ValueError(f"caption levels {sorted(unknown) or levels} not in cache {source.path}; "
                     f"it has {list(source.caption_levels)}")
  w = np.ones(len(levels)) if caption_weights is None else np.asarray(caption_weights, float)
  if w.shape != (len(levels),) or (w < 0).any() or w.sum() <= 0:
    raise ValueError(f"caption_weights {caption_weights} must be {len(levels)} "
                     "non-negative numbers with a positive sum")
  local_batch = batch_size // shard_count
  ds = grain.MapDataset.source(source)[shard_index::shard_count]
  if len(ds) == 0:
    raise ValueError(f"cache {source.path} has {len(source)} records: none for host "
                     f"{shard_index} of {shard_count}")
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  ds = ds.random_map(TokenizeCaption(tokenizer, text_len, levels, w / w.sum()), seed=seed)
  ds = ds.batch(local_batch, drop_remainder=True)
  it = ds.to_iter_dataset()
  if worker_count > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return it


def world_examples(source: WorldSource) -> Iterator[dict[str, Any]]:
  """The clips of `source` with all caption levels: {"video", "captions", "spec" (JSON str)}.

  Uses world.make_clip with the source's own (validated) parameters, so clip i is exactly
  source[i]["video"], but keeps every level rather than WorldSource's one drawn caption.
  """
  h, w, t = source.shape
  for i in range(len(source)):
    clip = world.make_clip(source.seed, i, h, w, t, **source.spec_kwargs)
    yield {"video": clip.video, "captions": dict(clip.captions),
           "spec": json.dumps(clip.spec.to_json(), sort_keys=True)}


def cache_world(out_dir: str | os.PathLike, data_cfg, encode_fn: Callable[[Any], Any], *,
                num_clips: int, seed: int, batch_size: int = 16, shard_size: int = 1024,
                dtype: str = "float32", meta: Mapping[str, Any] | None = None,
                overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
  """Renders world clips 0..num_clips-1 of `seed` at data_cfg's size and caches their latents.

  The world is infinite; a cache is a finite sample of it (num_clips, not data_cfg.num_clips).
  The manifest's meta records the world parameters beside the caller's `meta` (e.g. the codec).
  """
  source = WorldSource(seed=seed, num_clips=num_clips, height=data_cfg.height,
                       width=data_cfg.width, frames=data_cfg.frames,
                       max_objects=data_cfg.max_objects, wall_prob=data_cfg.wall_prob)
  world_meta = {"source": "world", "seed": int(seed), "num_clips": int(num_clips),
                "height": int(data_cfg.height), "width": int(data_cfg.width),
                "frames": int(data_cfg.frames), "max_objects": int(data_cfg.max_objects),
                "wall_prob": float(data_cfg.wall_prob)}
  return write_latent_cache(out_dir, world_examples(source), encode_fn, batch_size=batch_size,
                            shard_size=shard_size, dtype=dtype,
                            meta={"world": world_meta, **dict(meta or {})},
                            overwrite=overwrite, progress=progress, total=num_clips)
