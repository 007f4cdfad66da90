"""Tests for sorax.data.folder: a folder of real videos + captions, broken files skipped."""

import json
import os
import shutil

import numpy as np
import pytest

from sorax.data import world
from sorax.data.folder import VideoFolderSource, folder_dataset, list_videos
from sorax.data.video_io import VideoReadError, read_video, write_gif, write_mp4
from tests.test_video_broken import _bad_files
from tests.test_video_io import flat_clip

# Window of every example: 20 frames at 8 fps, 32x32. Every truncated file in the broken corpus
# holds less than 20 frames' worth of intact video (1.2-2 s), so all of them must be skipped.
T, H, W, FPS = 20, 32, 32, 8
# Broken corpus files with a video extension, by reason (notes.txt is not listed, the
# a_directory.mp4 directory is walked into and is empty).
EXPECTED_SKIPS = {
  "empty file": 1,  # empty.mp4
  "not a video / unknown format": 3,  # random.mp4, notes.mp4 (text), image_png.mp4
  "truncated/corrupt": 6,  # truncated, cut, half, cut.mkv, no_moov, header_only
  "no video stream": 1,  # audio_only.mp4
}


def _world_clip(i: int, frames: int = 24) -> world.Clip:
  return world.make_clip(7, i, 32, 48, frames)  # wider than the target: the crop has work to do


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A folder of 4 good videos (3 world clips in mp4 + 1 short gif) and the broken corpus.

  Returns (root, {relative path of each good video: caption}).
  """
  root = tmp_path_factory.mktemp("videos")
  _bad_files(root)
  good = {}
  os.mkdir(root / "sub")
  for i, name in enumerate(["world_0.mp4", "world_1.MP4", os.path.join("sub", "world_2.mov")]):
    clip = _world_clip(i)
    write_mp4(root / name, clip.video, fps=8)
    good[name] = clip.captions["terse"]
  write_gif(root / "short.gif", flat_clip(10, 32, 32), fps=8)  # 10 frames: padded to 20
  good["short.gif"] = "a short gif"
  return root, good


def _write_jsonl(path, rows) -> None:
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def jsonl(folder, tmp_path_factory):
  _, good = folder
  path = tmp_path_factory.mktemp("captions") / "captions.jsonl"
  rows = [{"file": f, "caption": c} for f, c in good.items()]
  rows.append({"file": "deleted_long_ago.mp4", "caption": "not in the folder: ignored"})
  _write_jsonl(path, rows)
  return path


def test_pipeline_yields_exactly_the_good_files_and_counts_the_broken(folder, jsonl):
  root, good = folder
  src = VideoFolderSource(root, frames=T, height=H, width=W, fps=FPS, captions=jsonl)
  assert len(src) == len(good) + sum(EXPECTED_SKIPS.values())
  got = list(folder_dataset(src))
  assert sorted(os.path.relpath(ex["path"], root) for ex in got) == sorted(good)
  for ex in got:
    rel = os.path.relpath(ex["path"], root)
    assert ex["video"].shape == (T, H, W, 3) and ex["video"].dtype == np.uint8
    assert ex["caption"] == good[rel]
    if rel == "short.gif":
      # GIF delays are whole centiseconds, so 8 fps in, 8 fps out is not exactly 10 frames.
      n = len(read_video(root / rel, fps=FPS))
      assert ex["num_frames"] == n and 8 <= n < T
      # Padding repeats the last real frame.
      assert (ex["video"][n:] == ex["video"][n - 1]).all()
    else:
      assert ex["num_frames"] == T  # 24 frames at 8 fps: the first 20
  assert src.skipped == EXPECTED_SKIPS
  assert len(src.skipped_files) == sum(EXPECTED_SKIPS.values())
  for path, message in src.skipped_files.items():
    assert message.startswith(path) and os.path.basename(path) in message
  # A second pass neither duplicates the counts nor changes the examples.
  again = list(folder_dataset(src))
  assert [ex["path"] for ex in again] == [ex["path"] for ex in got]
  assert src.skipped == EXPECTED_SKIPS


def test_example_matches_direct_read_and_world_clip(folder, jsonl):
  root, _ = folder
  src = VideoFolderSource(root, frames=T, height=H, width=W, fps=FPS, captions=jsonl)
  i = src.files.index("world_0.mp4")
  ex = src[i]
  np.testing.assert_array_equal(ex["video"], read_video(root / "world_0.mp4", size=(H, W))[:T])
  # The file holds make_clip's render (lossy H.264); the centre 32x32 of the 32x48 canvas.
  want = _world_clip(0).video[:T, :, 8:40].astype(np.int32)
  assert np.abs(ex["video"].astype(np.int32) - want).mean() < 4.0


def test_batched_pipeline(folder, jsonl):
  root, good = folder
  src = VideoFolderSource(root, frames=T, height=H, width=W, fps=FPS, captions=jsonl)
  batches = list(folder_dataset(src, batch_size=3, drop_remainder=False, shuffle_seed=0))
  assert [b["video"].shape for b in batches] == [(3, T, H, W, 3), (1, T, H, W, 3)]
  captions = [str(c) for b in batches for c in b["caption"]]
  assert sorted(captions) == sorted(good.values())
  assert src.skipped == EXPECTED_SKIPS


def test_source_raises_for_a_broken_file_and_the_pipeline_does_not(folder):
  root, _ = folder
  src = VideoFolderSource(root, frames=T, height=H, width=W, fps=FPS)
  with pytest.raises(VideoReadError, match=r"empty\.mp4: empty file"):
    src[src.files.index("empty.mp4")]
  with pytest.raises(IndexError, match="out of range"):
    src[len(src)]


def test_captions_from_sidecar_txt(tmp_path):
  for i in range(3):
    write_mp4(tmp_path / f"clip{i}.mp4", _world_clip(i, 8).video)
  (tmp_path / "clip0.txt").write_text("  a red ball bouncing\n", encoding="utf-8")
  (tmp_path / "clip1.txt").write_text("café à l'heure", encoding="utf-8")
  src = VideoFolderSource(tmp_path, frames=4, height=16, width=16, fps=8)
  assert src.files == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
  got = {os.path.basename(ex["path"]): ex["caption"] for ex in folder_dataset(src)}
  assert got == {"clip0.mp4": "a red ball bouncing", "clip1.mp4": "café à l'heure",
                 "clip2.mp4": ""}
  assert src.uncaptioned == ["clip2.mp4"] and src.skipped == {}


def test_file_removed_after_listing_is_skipped(tmp_path):
  for i in range(2):
    write_mp4(tmp_path / f"c{i}.mp4", _world_clip(i, 8).video)
  src = VideoFolderSource(tmp_path, frames=8, height=16, width=16, fps=8)
  os.remove(tmp_path / "c0.mp4")
  got = list(folder_dataset(src, batch_size=1))
  assert len(got) == 1 and got[0]["path"][0].endswith("c1.mp4")
  assert src.skipped == {"file not found": 1}


def test_random_crop_moves_between_epochs_and_is_reproducible(tmp_path):
  video = np.zeros((4, 32, 64, 3), np.uint8)
  video[..., 0] = np.linspace(20, 230, 64).astype(np.uint8)  # red ramp left to right
  write_mp4(tmp_path / "ramp.mp4", video, crf=10)
  src = VideoFolderSource(tmp_path, frames=4, height=32, width=32, fps=None, crop="random", seed=3)
  np.testing.assert_array_equal(src[0]["video"], src[0]["video"])
  left_edges = [int(ex["video"][0, 16, 0, 0]) for ex in folder_dataset(src, num_epochs=6)]
  assert len(set(left_edges)) > 1  # a different crop position in different epochs
  again = [int(ex["video"][0, 16, 0, 0]) for ex in folder_dataset(src, num_epochs=6)]
  assert again == left_edges  # ... and the same ones for the same seed


def test_shards_partition_the_files(tmp_path):
  for i in range(5):
    write_mp4(tmp_path / f"c{i}.mp4", flat_clip(2, 8, 8, seed=i))
  src = VideoFolderSource(tmp_path, frames=2, height=8, width=8, fps=None)
  shards = [[ex["path"] for ex in folder_dataset(src, shard_index=k, shard_count=2)]
            for k in range(2)]
  assert sorted(shards[0] + shards[1]) == [src.path(i) for i in range(5)]
  with pytest.raises(ValueError, match="shard_index"):
    folder_dataset(src, shard_index=2, shard_count=2)


def test_worker_processes_still_count_skips_in_the_main_process(folder, tmp_path):
  root, _ = folder
  for name in ["world_0.mp4", "empty.mp4", "random.mp4"]:
    shutil.copy(root / name, tmp_path / name)
  src = VideoFolderSource(tmp_path, frames=T, height=H, width=W, fps=FPS)
  got = list(folder_dataset(src, worker_count=1))
  assert [os.path.basename(ex["path"]) for ex in got] == ["world_0.mp4"]
  assert src.skipped == {"empty file": 1, "not a video / unknown format": 1}


# ----------------------------------------------------------------------------------------------
# Clear errors
# ----------------------------------------------------------------------------------------------


def test_missing_folder_and_folder_without_videos(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match=r"nope: video folder does not exist"):
    VideoFolderSource(missing, frames=4, height=8, width=8, fps=8)
  (tmp_path / "notes.txt").write_text("no videos here")
  os.mkdir(tmp_path / ".hidden")
  write_mp4(tmp_path / ".hidden" / "x.mp4", flat_clip(2, 8, 8))
  with pytest.raises(ValueError, match=r"no video files \(looked for .mp4, .mov"):
    list_videos(tmp_path)
  with pytest.raises(NotADirectoryError, match="notes.txt: is a file"):
    list_videos(tmp_path / "notes.txt")


@pytest.mark.parametrize(
  "lines, match",
  [
    (['{"file": "a.mp4", "caption": "x"}', "{not json"], r"captions.jsonl:2: not valid JSON"),
    (['{"file": "a.mp4"}'], r"captions.jsonl:1: expected \{\"file\""),
    (['["a.mp4", "x"]'], r"captions.jsonl:1: expected"),
    (['{"file": "a.mp4", "caption": "x"}', '{"file": "./a.mp4", "caption": "y"}'],
     r"captions.jsonl:2: second caption for './a.mp4'"),
  ],
  ids=["bad-json", "no-caption", "not-an-object", "duplicate"],
)
def test_bad_captions_file(tmp_path, lines, match):
  write_mp4(tmp_path / "a.mp4", flat_clip(2, 8, 8))
  path = tmp_path / "captions.jsonl"
  path.write_text("\n".join(lines) + "\n")
  with pytest.raises(ValueError, match=match):
    VideoFolderSource(tmp_path, frames=2, height=8, width=8, fps=8, captions=path)


def test_bad_arguments(tmp_path):
  write_mp4(tmp_path / "a.mp4", flat_clip(2, 8, 8))
  with pytest.raises(FileNotFoundError, match="missing.jsonl: captions file does not exist"):
    VideoFolderSource(tmp_path, frames=2, height=8, width=8, fps=8,
                      captions=tmp_path / "missing.jsonl")
  for kw, match in [({"frames": 0}, "frames"), ({"height": 2.5}, "height"), ({"fps": -1}, "fps"),
                    ({"crop": "left"}, "crop")]:
    args = {"frames": 2, "height": 8, "width": 8, "fps": 8} | kw
    with pytest.raises(ValueError, match=match):
      VideoFolderSource(tmp_path, **args)
