"""Tests for sorax.data.tfds: build each dataset into a temp dir, read it back through grain.

Needs the optional tensorflow-datasets (pip install 'sorax[tfds]'); TensorFlow is never needed,
and these tests check that it is not imported.
"""

import json
import os
import sys

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import grain

from sorax.data import tfds as sorax_tfds
from sorax.data import world
from sorax.data.video_io import read_video, write_mp4
from tests.test_video_broken import _bad_files


@pytest.fixture(autouse=True, scope="module")
def _quiet():
  tfds.disable_progress_bar()


WORLD_CFG = sorax_tfds.WorldConfig(name="test_16x24x6", height=16, width=24, frames=6, seed=5,
                                   num_train=5, num_validation=3)


@pytest.fixture(scope="module")
def world_data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def world_builder(world_data_dir):
  b = sorax_tfds.SoraxWorld(config=WORLD_CFG, data_dir=world_data_dir, file_format="array_record")
  b.download_and_prepare()
  return b


def test_world_reads_back_through_grain_and_equals_make_clip(world_builder):
  ds = sorax_tfds.as_grain(world_builder, "train")
  assert isinstance(ds, grain.MapDataset) and len(ds) == 5
  for i, ex in enumerate(ds):
    assert ex["index"] == i  # records are in index order
    clip = world.make_clip(5, i, 16, 24, 6)
    assert ex["video"].shape == (6, 16, 24, 3) and ex["video"].dtype == np.uint8
    np.testing.assert_array_equal(ex["video"], clip.video)
    for level in world.CAPTION_LEVELS:
      assert ex[f"caption_{level}"] == clip.captions[level]
    assert json.loads(ex["spec"]) == clip.spec.to_json()
  val = sorax_tfds.as_grain(world_builder, "validation")
  assert [ex["index"] for ex in val] == [5, 6, 7]  # the next clips of the same world
  np.testing.assert_array_equal(val[1]["video"], world.make_clip(5, 6, 16, 24, 6).video)
  assert "tensorflow" not in sys.modules


def test_world_by_name_and_as_a_grain_pipeline(world_builder, world_data_dir):
  # By registered name, as another process would open it (tfds.builder reads the prepared dir).
  ds = sorax_tfds.as_grain("sorax_world/test_16x24x6", "train[:4]", data_dir=world_data_dir)
  batches = list(ds.shuffle(seed=0).batch(2))
  assert [b["video"].shape for b in batches] == [(2, 6, 16, 24, 3)] * 2
  assert sorted(int(i) for b in batches for i in b["index"]) == [0, 1, 2, 3]
  assert world_builder.info.splits["train"].num_examples == 5


def test_world_builtin_configs():
  names = [c.name for c in sorax_tfds.SoraxWorld.BUILDER_CONFIGS]
  assert names == ["tiny", "demo", "base"]
  # "demo" and "base" prepare the clip shapes the experiment configs of the same name train on.
  from sorax.config import load_config
  for name in ("demo", "base"):
    b = sorax_tfds.SoraxWorld.builder_configs[name]
    d = load_config(f"experiments/world.py:{name}").data
    assert (b.height, b.width, b.frames) == (d.height, d.width, d.frames)


def test_as_grain_rejects_a_non_random_access_format(tmp_path):
  cfg = sorax_tfds.WorldConfig(name="fmt", height=8, width=8, frames=2, num_train=1,
                               num_validation=1)
  b = sorax_tfds.SoraxWorld(config=cfg, data_dir=str(tmp_path), file_format="tfrecord")
  with pytest.raises(ValueError, match="prepared as tfrecord.*array_record"):
    sorax_tfds.as_grain(b)


# ----------------------------------------------------------------------------------------------
# user_videos
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
  """3 good world clips (2 captioned in captions.jsonl, 1 with a sidecar) + the broken corpus."""
  root = tmp_path_factory.mktemp("user")
  _bad_files(root)
  captions = {}
  for i in range(3):
    clip = world.make_clip(1, i, 24, 24, 16)
    write_mp4(root / f"clip{i}.mp4", clip.video, fps=8)
    captions[f"clip{i}.mp4"] = clip.captions["descriptive"]
  with open(root / "captions.jsonl", "w") as f:
    f.writelines(json.dumps({"file": k, "caption": v}) + "\n" for k, v in captions.items())
  return root, captions


def test_user_videos_skip_broken_files_and_read_back(video_folder, tmp_path):
  root, captions = video_folder
  cfg = sorax_tfds.UserVideosConfig(name="test", root=str(root), frames=20, height=16, width=16,
                                    fps=8)
  b = sorax_tfds.UserVideos(config=cfg, data_dir=str(tmp_path), file_format="array_record")
  b.download_and_prepare()
  ds = sorax_tfds.as_grain(b, "train")
  got = {ex["path"]: ex for ex in ds}
  assert sorted(got) == sorted(captions)
  for path, ex in got.items():
    assert ex["video"].shape == (20, 16, 16, 3) and ex["video"].dtype == np.uint8
    assert ex["caption"] == captions[path]
    assert ex["num_frames"] == 16  # 16 real frames, then the last one 4 times
    np.testing.assert_array_equal(ex["video"][:16], read_video(root / path, size=(16, 16)))
    assert (ex["video"][16:] == ex["video"][15]).all()
  # A 20-frame window is longer than what is left of every truncated file: all 11 are skipped.
  assert sum(b.info.metadata["skipped"].values()) == 11
  # The counts survive on disk with the prepared dataset.
  again = sorax_tfds.UserVideos(config=cfg, data_dir=str(tmp_path), file_format="array_record")
  assert again.info.metadata["skipped"] == b.info.metadata["skipped"]
  assert "tensorflow" not in sys.modules


def test_user_videos_sidecar_captions_from_manual_dir(tmp_path):
  manual = tmp_path / "manual"
  os.mkdir(manual)
  write_mp4(manual / "a.mp4", world.make_clip(2, 0, 16, 16, 4).video)
  (manual / "a.txt").write_text("a sidecar caption\n")
  cfg = sorax_tfds.UserVideosConfig(name="manual", frames=4, height=16, width=16, fps=8)
  b = sorax_tfds.UserVideos(config=cfg, data_dir=str(tmp_path / "data"),
                            file_format="array_record")
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  (ex,) = list(sorax_tfds.as_grain(b))
  assert (ex["path"], ex["caption"], ex["video"].shape) == ("a.mp4", "a sidecar caption",
                                                            (4, 16, 16, 3))


def test_user_videos_clear_errors(video_folder, tmp_path):
  cfg = sorax_tfds.UserVideosConfig(name="nope", root=str(tmp_path / "nope"), frames=2,
                                    height=8, width=8)
  b = sorax_tfds.UserVideos(config=cfg, data_dir=str(tmp_path), file_format="array_record")
  with pytest.raises(FileNotFoundError, match="nope: video folder does not exist"):
    b.download_and_prepare()
  broken_only = tmp_path / "broken"
  os.mkdir(broken_only)
  root, _ = video_folder
  for name in ["empty.mp4", "random.mp4"]:
    os.link(root / name, broken_only / name)
  cfg = sorax_tfds.UserVideosConfig(name="broken", root=str(broken_only), frames=2, height=8,
                                    width=8)
  b = sorax_tfds.UserVideos(config=cfg, data_dir=str(tmp_path), file_format="array_record")
  with pytest.raises(ValueError, match=r"broken: none of the 2 video files could be read"):
    b.download_and_prepare()
