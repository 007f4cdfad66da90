"""TFDS builder `sorax_world`: clips of the built-in procedural world, with all caption levels.

Example i of "train" is world.make_clip(config.seed, i, H, W, T, ...): the same clip that
sorax.data.pipeline.WorldSource renders on the fly, so a prepared copy and the live world agree
bit for bit (records are stored in index order). "validation" holds the next indices
[num_train, num_train + num_validation): other clips from the same world.

Why prepare a world that is free to render: to hand it to tools that read TFDS, to freeze an
evaluation set, and to train from disk at sizes where rendering on the fly costs more than reading.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from sorax.data import world


@dataclasses.dataclass(eq=False)
class WorldConfig(tfds.core.BuilderConfig):
  """Clip shape, world seed/knobs and split sizes. The name picks the on-disk directory."""

  height: int = 32
  width: int = 32
  frames: int = 9
  seed: int = 0
  max_objects: int = 3
  wall_prob: float = 0.25
  num_train: int = 10_000
  num_validation: int = 500


class SoraxWorld(tfds.core.GeneratorBasedBuilder):
  """The built-in world: video uint8 [T, H, W, 3], captions at every level, spec JSON, index."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release: world of WORLD.md, 3 caption levels."}
  BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
    # Seconds to build; tests and smoke runs.
    WorldConfig(name="tiny", num_train=16, num_validation=8,
                description="32x32, 9 frames; 16 train / 8 validation clips"),
    # The clip shape of experiments/world.py:demo and :small.
    WorldConfig(name="demo", description="32x32, 9 frames; 10000 train / 500 validation clips"),
    # The clip shape of experiments/world.py:base.
    WorldConfig(name="base", height=64, width=64, frames=17, num_train=50_000,
                num_validation=1000,
                description="64x64, 17 frames; 50000 train / 1000 validation clips"),
  ]
  DEFAULT_CONFIG_NAME = "tiny"

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
      # Flat colours: zlib shrinks a 32x32x8 clip from 24 KiB to about 1 KiB.
      "video": tfds.features.Tensor(
        shape=(c.frames, c.height, c.width, 3), dtype=np.uint8,
        encoding=tfds.features.Encoding.ZLIB,
      ),
      "spec": tfds.features.Text(doc="scene spec, WORLD.md JSON layout"),
      "index": tfds.features.Scalar(dtype=np.int64, doc="clip index: make_clip(seed, index, ...)"),
    }
    for level in world.CAPTION_LEVELS:
      features[f"caption_{level}"] = tfds.features.Text(doc=f"the {level} caption (WORLD.md)")
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(features),
      disable_shuffling=True,  # record i is clip i: the prepared copy matches make_clip
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # nothing to download: the world is rendered
    c = self.builder_config
    return {
      "train": self._generate_examples(0, c.num_train),
      "validation": self._generate_examples(c.num_train, c.num_train + c.num_validation),
    }

  def _generate_examples(self, start: int, stop: int) -> Iterator[tuple[int, dict[str, Any]]]:
    c = self.builder_config
    for index in range(start, stop):
      clip = world.make_clip(c.seed, index, c.height, c.width, c.frames,
                             max_objects=c.max_objects, wall_prob=c.wall_prob)
      example = {"video": clip.video, "spec": json.dumps(clip.spec.to_json()), "index": index}
      for level in world.CAPTION_LEVELS:
        example[f"caption_{level}"] = clip.captions[level]
      yield index, example
