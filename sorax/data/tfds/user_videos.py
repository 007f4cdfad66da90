"""TFDS builder `user_videos`: a folder of the user's videos + captions, decoded once.

The folder rules are sorax.data.folder's: video files found recursively (mp4, mov, webm, mkv, avi,
gif); captions from a JSONL file of {"file": <path relative to the folder>, "caption": <text>}
lines (config.captions, or captions.jsonl in the folder when present) or else from sidecar
<name>.txt files. Every example is the first `frames` frames at `fps`, scaled to cover and
centre-cropped to height x width, padded by repeating the last frame when the file is shorter.

Broken files (truncated, corrupt, not a video, ...) are skipped and logged once each, with the
reason; the build ends with a summary and the counts are saved in the dataset's metadata
(builder.info.metadata["skipped"], {reason: files}). A folder where nothing decodes is an error.

Where the folder is: config.root, or else the TFDS manual directory (<data_dir>/downloads/manual,
or download_config=tfds.download.DownloadConfig(manual_dir=...)).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from sorax.data.folder import VideoFolderSource
from sorax.data.video_io import VideoReadError


@dataclasses.dataclass(eq=False)
class UserVideosConfig(tfds.core.BuilderConfig):
  """The folder, the captions file and the clip shape. The name picks the on-disk directory."""

  root: str | None = None  # None: the TFDS manual_dir
  captions: str | None = None  # JSONL; relative paths are inside the folder
  frames: int = 16
  height: int = 64
  width: int = 64
  fps: float = 8.0


class UserVideos(tfds.core.GeneratorBasedBuilder):
  """video uint8 [frames, H, W, 3], caption, path (relative to the folder), num_frames."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release."}
  BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
    UserVideosConfig(name="64x64x16", description="64x64, 16 frames at 8 fps"),
    UserVideosConfig(name="256x256x32", height=256, width=256, frames=32, fps=16.0,
                     description="256x256, 32 frames at 16 fps"),
  ]
  DEFAULT_CONFIG_NAME = "64x64x16"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put your video files (mp4, mov, webm, mkv, avi, gif; subfolders are fine) in the manual
  directory, with captions either in captions.jsonl there ({"file": "clip.mp4", "caption": "..."}
  per line) or in a clip.txt next to each clip.mp4. Or set UserVideosConfig(root=...).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict({
        "video": tfds.features.Tensor(
          shape=(c.frames, c.height, c.width, 3), dtype=np.uint8,
          encoding=tfds.features.Encoding.ZLIB,
        ),
        "caption": tfds.features.Text(),
        "path": tfds.features.Text(doc="the video file, relative to the folder"),
        "num_frames": tfds.features.Scalar(
          dtype=np.int32, doc="real frames before padding by repeating the last one"
        ),
      }),
      metadata=tfds.core.MetadataDict(),
    )

  def _source(self, dl_manager: tfds.download.DownloadManager) -> VideoFolderSource:
    c = self.builder_config
    root = os.fspath(c.root) if c.root is not None else os.fspath(dl_manager.manual_dir)
    captions = c.captions
    if captions is not None:
      captions = os.path.join(root, captions)  # an absolute path stays as it is
    elif os.path.isfile(os.path.join(root, "captions.jsonl")):
      captions = os.path.join(root, "captions.jsonl")
    return VideoFolderSource(root, frames=c.frames, height=c.height, width=c.width, fps=c.fps,
                             captions=captions)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    return {"train": self._generate_examples(self._source(dl_manager))}

  def _generate_examples(self, source: VideoFolderSource) -> Iterator[tuple[str, dict[str, Any]]]:
    kept = 0
    for i in range(len(source)):
      try:
        ex = source[i]
      except VideoReadError as e:
        source.note_skip(e.path, e.reason, str(e))
        continue
      kept += 1
      rel = source.files[i]
      yield rel, {"video": ex["video"], "caption": ex["caption"], "path": rel,
                  "num_frames": ex["num_frames"]}
    skipped = sum(source.skipped.values())
    logging.info("user_videos: %d examples from %s, %d files skipped %s", kept, source.root,
                 skipped, source.skipped)
    self.info.metadata["skipped"] = dict(source.skipped)
    if kept == 0:
      raise ValueError(
        f"{source.root}: none of the {len(source)} video files could be read "
        f"(skipped: {source.skipped})"
      )
