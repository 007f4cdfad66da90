"""grain pipelines: random-access sources -> tokenized batches, with checkpointable state.

A world clip is a pure function of (seed, index), so the source is random access and the
iterator's whole state is a position: saving it with the model makes resumption exact.
"""

from __future__ import annotations

from typing import Any, Sequence

import grain
from absl import flags
import numpy as np

from sorax.data import world
from sorax.data.captions import attribute_labels
from sorax.models.text import Tokenizer


class WorldSource:
  """Random-access world clips: index -> {video uint8 [T, H, W, 3], caption, spec (JSON str)}.

  The caption level is drawn per index from `caption_levels` with `caption_weights`.
  """

  def __init__(self, *, seed: int, num_clips: int, height: int, width: int, frames: int,
               max_objects: int = 3, wall_prob: float = 0.25,
               caption_levels: Sequence[str] = ("terse",),
               caption_weights: Sequence[float] | None = None):
    unknown = set(caption_levels) - set(world.CAPTION_LEVELS)
    if unknown:
      raise ValueError(f"unknown caption levels {sorted(unknown)}; use {world.CAPTION_LEVELS}")
    self.seed, self.num_clips = int(seed), int(num_clips)
    self.shape = (int(height), int(width), int(frames))
    self.spec_kwargs = dict(max_objects=max_objects, wall_prob=wall_prob)
    self.levels = tuple(caption_levels)
    w = np.ones(len(self.levels)) if caption_weights is None else np.asarray(caption_weights, float)
    if w.shape != (len(self.levels),) or (w < 0).any() or w.sum() <= 0:
      raise ValueError(f"caption_weights {caption_weights} must be {len(self.levels)} "
                       "non-negative numbers with a positive sum")
    self.weights = w / w.sum()

  def __len__(self) -> int:
    return self.num_clips

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not 0 <= index < self.num_clips:
      raise IndexError(f"world clip index {index} out of range [0, {self.num_clips})")
    h, w, t = self.shape
    clip = world.make_clip(self.seed, index, h, w, t, **self.spec_kwargs)
    rng = np.random.default_rng([self.seed, index, 1])
    level = self.levels[rng.choice(len(self.levels), p=self.weights)]
    return {"video": clip.video, "caption": clip.captions[level], "level": level,
            "spec": clip.spec}

  def __repr__(self) -> str:
    return f"WorldSource(seed={self.seed}, n={self.num_clips}, HWT={self.shape})"


class Tokenize(grain.transforms.Map):
  def __init__(self, tokenizer: Tokenizer, max_len: int):
    self.tokenizer, self.max_len = tokenizer, max_len

  def map(self, ex: dict[str, Any]) -> dict[str, Any]:
    ids, mask = self.tokenizer.encode([ex["caption"]], self.max_len)
    return {"video": ex["video"], "ids": ids[0], "mask": mask[0],
            "labels": attribute_labels(ex["spec"], ex["level"])}


def _video_only(ex: dict[str, Any]) -> dict[str, Any]:
  return {"video": ex["video"]}


def world_dataset(data_cfg, tokenizer: Tokenizer | None, *, shard_index: int = 0,
                  shard_count: int = 1) -> grain.IterDataset:
  """Batches {video uint8 [B, T, H, W, 3], ids int32 [B, L], mask bool [B, L], labels int32
  [B, slots, groups] (what each caption states: captions.attribute_labels)}, forever.

  With no tokenizer (VAE training), batches hold the video only.

  Each host reads the slice `shard_index::shard_count` of the clip indices (multi-host JAX:
  process_index / process_count) and builds its local share of the global batch.
  """
  if data_cfg.batch_size % shard_count:
    raise ValueError(f"batch_size {data_cfg.batch_size} is not divisible by {shard_count} hosts")
  source = WorldSource(
      seed=data_cfg.seed, num_clips=data_cfg.num_clips, height=data_cfg.height,
      width=data_cfg.width, frames=data_cfg.frames, max_objects=data_cfg.max_objects,
      wall_prob=data_cfg.wall_prob, caption_levels=list(data_cfg.caption_levels),
      caption_weights=list(data_cfg.caption_weights))
  ds = grain.MapDataset.source(source)[shard_index::shard_count]
  ds = ds.repeat()
  if tokenizer is None:
    ds = ds.map(_video_only)
  else:
    ds = ds.map(Tokenize(tokenizer, data_cfg.text_len))
  ds = ds.batch(data_cfg.batch_size // shard_count, drop_remainder=True)
  it = ds.to_iter_dataset()
  if data_cfg.worker_count > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; the CLI never parses them
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_cfg.worker_count))
  return it
