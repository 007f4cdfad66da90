"""A corpus of broken video files: each gives one VideoReadError naming the file and the
problem; iter_videos skips them with a counter."""

import os
import pathlib
import pickle
import wave

import av
import numpy as np
import pytest

from sorax.data.video_io import (VideoNotFoundError, VideoReadError, iter_videos, probe,
                                 read_video, write_mp4)
from tests.test_video_io import _write_with_pyav, flat_clip
from tests.test_video_io import mp4_16fps  # noqa: F401  (a fixture, used by name)


def _write_wav(path) -> None:
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(b"\0\0" * 800)


def _bad_files(root) -> dict[str, tuple[str, str]]:
  """Builds a corpus of broken files; returns {case: (path, expected reason substring)}."""
  good_path = str(root / "good.mp4")
  write_mp4(good_path, flat_clip(48, 48, 64, seed=2), fps=16)
  good = pathlib.Path(good_path).read_bytes()
  with av.open(good_path) as c:
    packets = [pkt for pkt in c.demux(video=0) if pkt.size]
  mid_first_frame = packets[0].pos + packets[0].size // 2
  packet_boundary = packets[len(packets) // 2].pos
  os.remove(good_path)
  # Written without faststart, so the index (moov) is at the end and a cut loses it.
  no_faststart = str(root / "no_faststart.mp4")
  _write_with_pyav(no_faststart, "mp4", flat_clip(8, 32, 32))
  no_moov = pathlib.Path(no_faststart).read_bytes()
  os.remove(no_faststart)
  mkv = str(root / "good.mkv")
  _write_with_pyav(mkv, "matroska", flat_clip(32, 32, 32))
  mkv_bytes = pathlib.Path(mkv).read_bytes()
  os.remove(mkv)
  rng = np.random.default_rng(0)
  files = {
    "empty": ("empty.mp4", b"", "empty file"),
    "random": ("random.mp4", rng.bytes(4096), "not a video"),
    # moov is written first (faststart), so 40% keeps the header and the first few frames.
    "truncated": ("truncated.mp4", good[: int(len(good) * 0.4)], "truncated/corrupt"),
    "truncated-first-frame": ("cut.mp4", good[:mid_first_frame], "truncated/corrupt"),
    # Cut between two packets: FFmpeg decodes the first half without any error.
    "truncated-at-boundary": ("half.mp4", good[:packet_boundary], "truncated/corrupt"),
    # Matroska has no per-stream duration; the file's is used when video is the only stream.
    "truncated-mkv": ("cut.mkv", mkv_bytes[: len(mkv_bytes) // 2], "truncated/corrupt"),
    "truncated-no-moov": ("no_moov.mp4", no_moov[: int(len(no_moov) * 0.9)], "moov"),
    "header-only": ("header_only.mp4", good[:64], "truncated/corrupt"),
    "text-as-mp4": ("notes.mp4", b"just some text\n" * 50, "not a video"),
    # FFmpeg's tty demuxer opens any .txt as an ANSI-art "video"; it must be rejected.
    "text-as-txt": ("notes.txt", b"just some text\n" * 50, "not a video"),
  }
  out = {}
  for case, (name, data, reason) in files.items():
    (root / name).write_bytes(data)
    out[case] = (str(root / name), reason)
  frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
  frame.save(str(root / "image.png"))
  os.rename(root / "image.png", root / "image_png.mp4")
  out["png-as-mp4"] = (str(root / "image_png.mp4"), "not a video")
  _write_wav(root / "audio.wav")
  os.rename(root / "audio.wav", root / "audio_only.mp4")
  out["audio-only"] = (str(root / "audio_only.mp4"), "no video stream")
  os.mkdir(root / "a_directory.mp4")
  out["directory"] = (str(root / "a_directory.mp4"), "is a directory")
  out["missing"] = (str(root / "does_not_exist.mp4"), "file not found")
  return out


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
  return _bad_files(tmp_path_factory.mktemp("bad"))


CASES = [
  "empty", "random", "truncated", "truncated-first-frame", "truncated-at-boundary",
  "truncated-mkv", "truncated-no-moov", "header-only", "text-as-mp4", "text-as-txt",
  "png-as-mp4", "audio-only", "directory", "missing",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fn", [read_video, probe], ids=["read_video", "probe"])
def test_bad_files_raise_video_read_error(bad_files, case, fn):
  path, reason = bad_files[case]
  if fn is probe and case in ("truncated", "truncated-at-boundary", "truncated-mkv"):
    # The header (moov, written first) is intact and the first frame decodes: probe is cheap
    # and does not read the whole file, so it cannot see the damage further on.
    assert probe(path)["height"] > 0
    return
  with pytest.raises(VideoReadError) as info:
    fn(path)
  msg = str(info.value)
  assert os.path.basename(path) in msg
  assert reason in msg
  assert info.value.path == path


def test_video_read_error_fields_and_pickling():
  err = VideoReadError("dir/a.mp4", "empty file", "0 bytes")
  assert (err.path, err.reason, err.detail) == ("dir/a.mp4", "empty file", "0 bytes")
  assert str(err) == "dir/a.mp4: empty file (0 bytes)"
  again = pickle.loads(pickle.dumps(err))
  assert type(again) is VideoReadError and str(again) == str(err)
  assert str(VideoReadError("a.mp4: custom message")) == "a.mp4: custom message"
  missing = pickle.loads(pickle.dumps(VideoNotFoundError("b.mp4")))
  assert isinstance(missing, FileNotFoundError) and str(missing) == "b.mp4: file not found"


def test_missing_file_is_also_file_not_found(bad_files):
  path, _ = bad_files["missing"]
  with pytest.raises(FileNotFoundError):
    read_video(path)
  with pytest.raises(VideoNotFoundError):
    probe(path)


@pytest.mark.parametrize(
  "case, match",
  [
    ("truncated", r"file ends inside a packet after [1-9]\d* frames"),
    ("truncated-first-frame", r"decode failed after 0 frames"),
    ("truncated-at-boundary", r"decoded 24 frames covering 1.5 s of the 3 s"),
  ],
)
def test_truncation_is_detected_and_explained(bad_files, case, match):
  path = bad_files[case][0]
  with pytest.raises(VideoReadError, match=match):
    read_video(path)
  with pytest.raises(VideoReadError, match=match):
    read_video(path, fps=8)
  if case != "truncated-first-frame":
    # Frames before the damage are still usable when the caller only needs a prefix.
    assert read_video(path, max_frames=2).shape[0] == 2


def test_iter_videos_skips_and_counts_bad_files(bad_files, mp4_16fps):
  paths = [mp4_16fps] + [bad_files[c][0] for c in CASES] + [mp4_16fps]
  skipped: dict[str, int] = {}
  got = list(iter_videos(paths, skipped=skipped, fps=8, size=(16, 16)))
  assert [p for p, _ in got] == [mp4_16fps, mp4_16fps]
  assert all(v.shape == (10, 16, 16, 3) for _, v in got)
  assert sum(skipped.values()) == len(CASES)
  assert skipped["empty file"] == 1
  assert skipped["not a video / unknown format"] == 4
  assert skipped["truncated/corrupt"] == 6
  assert skipped["no video stream"] == 1
  assert skipped["file not found"] == 1


def test_iter_videos_propagates_caller_errors(mp4_16fps):
  with pytest.raises(ValueError, match="fps"):
    list(iter_videos([mp4_16fps], fps=-1))
