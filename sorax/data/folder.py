"""A folder of the user's own videos + captions as a grain source and pipeline.

Public API:
  VideoFolderSource(root, *, frames, height, width, fps, captions=None, crop=, seed=)
      random access: index -> {"video" uint8 [frames, height, width, 3], "caption", "path",
      "num_frames"}; raises VideoReadError for a broken file
  folder_dataset(source, *, batch_size=, shuffle_seed=, num_epochs=, ...) -> grain.IterDataset
      the same examples, broken files skipped and counted on `source.skipped`, never raised
  list_videos(root), read_captions(...)   the listing and caption rules, for builders and tools

Why a skip-and-count pipeline: a real corpus always holds a few files that a download or a
recording cut short, mislabelled images, audio-only files... One of them must not stop a
training run, but silently losing a tenth of the data must not go unnoticed either: every skip
is logged once with the file and the reason, and counted by reason.

Clip window: each example is the *first* `frames` frames of the file at `fps` (the clip's start,
so only that part is decoded). A shorter file is padded by repeating its last frame;
"num_frames" says how many frames are real. Only the frames the window needs are decoded, so
damage after them goes unnoticed: that file still gives a good example.
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any

import grain
import numpy as np
from absl import flags, logging

from sorax.data.video_io import VideoReadError, read_video

__all__ = [
  "VIDEO_EXTENSIONS",
  "VideoFolderSource",
  "folder_dataset",
  "list_videos",
  "read_captions",
]

VIDEO_EXTENSIONS = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")


def list_videos(root: str | os.PathLike) -> list[str]:
  """Video files under `root` (recursive, by extension, case-insensitive), as sorted relative paths.

  Hidden files and folders (".name", e.g. the temp files of an interrupted write) are left out.
  Raises FileNotFoundError if `root` does not exist, NotADirectoryError if it is a file, and
  ValueError if it holds no video file (naming the extensions looked for).
  """
  root = os.fspath(root)
  if not os.path.exists(root):
    raise FileNotFoundError(f"{root}: video folder does not exist")
  if not os.path.isdir(root):
    raise NotADirectoryError(f"{root}: is a file, not a video folder")
  found = []
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    for name in filenames:
      if not name.startswith(".") and name.lower().endswith(VIDEO_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(dirpath, name), root))
  if not found:
    raise ValueError(f"{root}: no video files (looked for {', '.join(VIDEO_EXTENSIONS)})")
  return sorted(found)


def _read_jsonl(path: str, root: str) -> dict[str, str]:
  """{relative video path: caption} from lines {"file": ..., "caption": ...}."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: captions file does not exist")
  out: dict[str, str] = {}
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
      well_formed = (
        isinstance(row, dict)
        and isinstance(row.get("file"), str)
        and isinstance(row.get("caption"), str)
      )
      if not well_formed:  # a malformed line in the user's data: ValueError, like bad JSON
        raise ValueError(
          f'{path}:{lineno}: expected {{"file": "<video path>", "caption": "<text>"}}, got '
          f"{line.strip()[:120]}"
        )
      # "file" is relative to the video folder (an absolute path inside it works too).
      rel = os.path.normpath(os.path.relpath(os.path.join(root, row["file"]), root))
      if rel in out:
        raise ValueError(f"{path}:{lineno}: second caption for {row['file']!r}")
      out[rel] = row["caption"].strip()
  return out


def read_captions(
  root: str | os.PathLike, files: list[str], captions: str | os.PathLike | None = None
) -> dict[str, str]:
  """Captions for `files` (paths relative to `root`): {relative path: caption}.

  With `captions` (a JSONL file of {"file": <path relative to root>, "caption": <text>} lines),
  captions come from there; without it, from a sidecar text file next to each video with the same
  name and a .txt extension (clip.mp4 -> clip.txt, UTF-8). Videos with no caption are left out
  of the result (callers give them ""); captions for files that are not in `files` are ignored.
  Malformed JSONL raises ValueError naming the file and line.
  """
  root = os.fspath(root)
  if captions is not None:
    table = _read_jsonl(os.fspath(captions), root)
    return {f: table[os.path.normpath(f)] for f in files if os.path.normpath(f) in table}
  out = {}
  for f in files:
    sidecar = os.path.join(root, os.path.splitext(f)[0] + ".txt")
    if os.path.isfile(sidecar):
      with open(sidecar, encoding="utf-8", errors="replace") as fh:
        out[f] = fh.read().strip()
  return out


class VideoFolderSource:
  """Random access over a folder of video files (a grain RandomAccessDataSource).

  index -> {"video": uint8 [frames, height, width, 3], "caption": str, "path": str (absolute),
            "num_frames": int (real frames before padding, 1..frames)}

  Each file is resampled in time to `fps`, scaled to cover height x width keeping its aspect and
  cropped (centre, or a random position with crop="random"), and cut or padded to `frames` (the
  first window; see the module docstring). Reading a broken file raises VideoReadError; use
  folder_dataset to skip those. `skipped` ({reason: files}) and `skipped_files`
  ({path: message}) are filled in by folder_dataset in the process that iterates.

  Args:
    root: the folder (searched recursively for VIDEO_EXTENSIONS).
    frames, height, width: the clip shape every example has.
    fps: training frame rate; None keeps each file's own frames.
    captions: JSONL file of {"file", "caption"}; None reads sidecar <name>.txt files. Videos
      without a caption get "" (a warning says how many): they still train the model
      unconditionally, as caption dropout does.
    crop: "center", or "random" (position drawn per index from `seed` here; folder_dataset
      draws a new one every epoch).
  """

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    frames: int,
    height: int,
    width: int,
    fps: float | None,
    captions: str | os.PathLike | None = None,
    crop: str = "center",
    seed: int = 0,
  ):
    for name, v in (("frames", frames), ("height", height), ("width", width)):
      if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, numbers.Real) or fps <= 0):
      raise ValueError(f"fps must be a positive number or None, got {fps!r}")
    if crop not in ("center", "random"):
      raise ValueError(f'crop must be "center" or "random", got {crop!r}')
    self.root = os.path.abspath(os.fspath(root))
    self.frames, self.height, self.width, self.fps = int(frames), int(height), int(width), fps
    self.crop, self.seed = crop, int(seed)
    self.files = list_videos(self.root)  # relative paths, sorted
    table = read_captions(self.root, self.files, captions)
    self.captions = [table.get(f, "") for f in self.files]
    self.uncaptioned = [f for f in self.files if f not in table]
    if self.uncaptioned:
      where = f"in {os.fspath(captions)}" if captions is not None else "as sidecar .txt files"
      logging.warning(
        "%s: %d of %d videos have no caption %s (they get an empty caption), e.g. %s",
        self.root, len(self.uncaptioned), len(self.files), where, self.uncaptioned[:3],
      )
    self.skipped: dict[str, int] = {}  # reason -> number of distinct files
    self.skipped_files: dict[str, str] = {}  # absolute path -> error message

  def __len__(self) -> int:
    return len(self.files)

  def path(self, index: int) -> str:
    return os.path.join(self.root, self.files[index])

  def read(self, index: int, crop_pos: tuple[float, float] = (0.5, 0.5)) -> dict[str, Any]:
    """Example `index` with the crop window at `crop_pos`; raises VideoReadError."""
    index = int(index)
    if not 0 <= index < len(self.files):
      raise IndexError(f"video index {index} out of range [0, {len(self.files)}) in {self.root}")
    path = self.path(index)
    video = read_video(
      path, fps=self.fps, size=(self.height, self.width), max_frames=self.frames,
      crop_pos=crop_pos,
    )  # uint8 [t <= frames, height, width, 3]
    n = len(video)
    if n < self.frames:  # pad by repeating the last frame (a still ending, not a black one)
      video = np.concatenate([video, np.repeat(video[-1:], self.frames - n, axis=0)])
    return {"video": video, "caption": self.captions[index], "path": path, "num_frames": n}

  def __getitem__(self, index: int) -> dict[str, Any]:
    if self.crop == "random":
      pos = np.random.default_rng([self.seed, int(index)]).uniform(size=2)
      return self.read(index, (float(pos[0]), float(pos[1])))
    return self.read(index)

  def note_skip(self, path: str, reason: str, message: str) -> None:
    """Records (once per file) and logs a file that could not be read."""
    if path in self.skipped_files:
      return
    self.skipped_files[path] = message
    self.skipped[reason] = self.skipped.get(reason, 0) + 1
    logging.warning("skipping video %s", message)

  def __repr__(self) -> str:
    return (
      f"VideoFolderSource({self.root!r}, n={len(self.files)}, "
      f"THW=({self.frames}, {self.height}, {self.width}), fps={self.fps}, crop={self.crop!r})"
    )


# ----------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------

_SKIP = "__skipped__"  # key of the marker element a broken file turns into


def _read_or_mark(source: VideoFolderSource, index: int, crop_pos) -> dict[str, Any]:
  try:
    return source.read(index, crop_pos)
  except VideoReadError as e:
    # A marker, not None: it travels from worker processes to the main one, where it is counted.
    return {_SKIP: (e.path, e.reason, str(e))}


class _Read(grain.transforms.Map):
  def __init__(self, source: VideoFolderSource):
    self.source = source

  def map(self, index: int) -> dict[str, Any]:
    return _read_or_mark(self.source, index, (0.5, 0.5))


class _RandomCropRead(grain.transforms.RandomMap):
  def __init__(self, source: VideoFolderSource):
    self.source = source

  def random_map(self, index: int, rng: np.random.Generator) -> dict[str, Any]:
    y, x = rng.uniform(size=2)
    return _read_or_mark(self.source, index, (float(y), float(x)))


class _CountSkips(grain.transforms.Filter):
  """Drops skip markers, counting them on the source (runs in the iterating process)."""

  def __init__(self, source: VideoFolderSource):
    self.source = source

  def filter(self, element: dict[str, Any]) -> bool:
    if _SKIP in element:
      self.source.note_skip(*element[_SKIP])
      return False
    return True


def folder_dataset(
  source: VideoFolderSource,
  *,
  batch_size: int | None = None,
  drop_remainder: bool = True,
  shuffle_seed: int | None = None,
  num_epochs: int | None = 1,
  shard_index: int = 0,
  shard_count: int = 1,
  worker_count: int = 0,
) -> grain.IterDataset:
  """Examples of `source`, broken files skipped: never raises VideoReadError.

  Yields source's examples (batched to [B, ...] arrays when batch_size is given: "video" uint8
  [B, frames, H, W, 3], "caption"/"path" str [B], "num_frames" int [B]). Each broken file is
  logged once (absl, WARNING, with its path and reason) and counted in `source.skipped`
  ({reason: distinct files}) and `source.skipped_files` ({path: message}) of the `source` object
  passed here, also when worker processes decode (counting runs in the iterating process).

  Args:
    batch_size: None yields single examples (e.g. to map a tokenizer first, then .batch()).
    shuffle_seed: None keeps file order; otherwise a new shuffle each epoch.
    num_epochs: None repeats forever.
    shard_index, shard_count: this host's slice `shard_index::shard_count` of the files.
    worker_count: decode in this many processes (grain mp_prefetch); 0 decodes in-line. grain
      reads absl flags there, so they are marked parsed (defaults) when no absl app parsed them.
  """
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count})")
  ds = grain.MapDataset.range(len(source))[shard_index::shard_count]
  if shuffle_seed is not None:
    ds = ds.shuffle(seed=shuffle_seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  if source.crop == "random":
    # Seeded per element of the repeated dataset: a new crop of the same file every epoch.
    ds = ds.random_map(_RandomCropRead(source), seed=source.seed)
  else:
    ds = ds.map(_Read(source))
  it = ds.to_iter_dataset()
  if worker_count > 0:
    if not flags.FLAGS.is_parsed():
      # grain's multiprocessing reads its absl flags; outside an absl app (the sorax CLI, tests,
      # notebooks) nobody parsed them and the first read raises. Their defaults are what we want.
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  it = it.filter(_CountSkips(source))
  if batch_size is not None:
    it = it.batch(batch_size, drop_remainder=drop_remainder)
  return it
