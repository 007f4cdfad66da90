"""TFDS builders for sorax data, read through grain without TensorFlow.

Builders (importing this package registers them with tensorflow_datasets):
  sorax_world    the built-in procedural world (sorax.data.world): video + 3 captions + spec
  user_videos    a folder of the user's videos + captions (sorax.data.folder)

Why TFDS at all: a prepared dataset is a versioned, self-describing directory (features.json,
dataset_info.json, split sizes) that other tools read, and array_record files give grain fast
random access (shuffling, exact resumption, multi-host sharding) with no decoding of video files
at training time. Why no TensorFlow: building with file_format="array_record" and reading with
builder.as_data_source() are pure Python/numpy in tensorflow-datasets >= 4.9; only
builder.as_dataset()/tfds.load (tf.data) and the tfds.features.Video/Image features import
TensorFlow, and these builders use neither (video is a uint8 Tensor feature, zlib-compressed).

Usage:
  from sorax.data import tfds as sorax_tfds
  b = sorax_tfds.SoraxWorld(config="tiny", data_dir=d, file_format="array_record")
  b.download_and_prepare()
  ds = sorax_tfds.as_grain(b, "train")  # grain.MapDataset of dicts, text features as str
"""

from __future__ import annotations

from typing import Any

try:
  import tensorflow_datasets as tfds
except ImportError as e:  # pragma: no cover - depends on the install
  raise ImportError(
    "sorax.data.tfds needs tensorflow-datasets: pip install 'sorax[tfds]' "
    "(TensorFlow itself is not needed)"
  ) from e

import grain

from sorax.data.tfds.user_videos import UserVideos, UserVideosConfig
from sorax.data.tfds.world import SoraxWorld, WorldConfig

__all__ = ["SoraxWorld", "UserVideos", "UserVideosConfig", "WorldConfig", "as_grain"]


def _decode_text(example: dict[str, Any]) -> dict[str, Any]:
  # array_record data sources return tfds Text features as UTF-8 bytes.
  return {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in example.items()}


def as_grain(
  builder: tfds.core.DatasetBuilder | str, split: str = "train", *, data_dir: str | None = None
) -> grain.MapDataset:
  """A prepared dataset's `split` as a grain MapDataset (random access), text features as str.

  Args:
    builder: a builder whose download_and_prepare() has run (built with
      file_format="array_record"), or a registered name such as "sorax_world/tiny" (then
      `data_dir` says where it was prepared).
    split: "train", "validation", or any TFDS split expression ("train[:10]").

  Raises:
    ValueError: the dataset was prepared in another file format (grain needs random access);
      whatever tfds raises when it was not prepared at all (naming the directory).
  """
  if isinstance(builder, str):
    builder = tfds.builder(builder, data_dir=data_dir)
  fmt = builder.info.file_format
  if fmt is not None and fmt.value != "array_record":
    raise ValueError(
      f"{builder.info.full_name} in {builder.data_dir} was prepared as {fmt.value}; grain needs "
      'random access: prepare it with file_format="array_record"'
    )
  return grain.MapDataset.source(builder.as_data_source(split=split)).map(_decode_text)
