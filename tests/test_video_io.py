"""Tests for sorax.data.video_io: round trips, resampling, resizing, atomic writes (broken input
files: tests/test_video_broken.py)."""

import os

import av
import numpy as np
import pytest

from sorax.data import video_write
from sorax.data.video_io import (
  VideoReadError,
  probe,
  read_video,
  resample_fps,
  resize_crop,
  write_gif,
  write_mp4,
)


def flat_clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
  """uint8 [t, h, w, 3]: each frame one flat colour, with a flat rectangle of another colour.

  Flat regions compress almost losslessly, so round-trip error measures colour handling, not
  the codec's detail loss. Colours avoid the extremes that limited-range YUV clips.
  """
  rng = np.random.default_rng(seed)
  video = np.empty((t, h, w, 3), np.uint8)
  for i in range(t):
    video[i] = rng.integers(20, 236, 3)
    video[i, : h // 2, : w // 2] = rng.integers(20, 236, 3)
  return video


def mean_abs_err(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def interior(video: np.ndarray) -> np.ndarray:
  """Pixels away from the rectangle's edges, where 4:2:0 chroma subsampling blurs colour."""
  h, w = video.shape[1:3]
  return video[:, h // 2 + 2 :, w // 2 + 2 :]


@pytest.fixture(scope="module")
def mp4_16fps(tmp_path_factory) -> str:
  """A valid 16 fps, 20-frame, 48x64 mp4 shared by the read-side tests."""
  path = str(tmp_path_factory.mktemp("videos") / "clip16.mp4")
  write_mp4(path, flat_clip(20, 48, 64, seed=1), fps=16)
  return path


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "h, w",
  [(32, 32), (24, 40), (40, 24), (17, 23), (18, 23), (17, 24), (2, 2), (1, 1)],
  ids=lambda x: str(x),
)
def test_mp4_round_trip_any_size(tmp_path, h, w):
  video = flat_clip(6, h, w)
  path = tmp_path / f"clip_{h}x{w}.mp4"
  write_mp4(path, video, fps=8, crf=18)
  back = read_video(path)
  assert back.dtype == np.uint8
  assert back.shape == video.shape
  if h >= 8 and w >= 8:
    assert mean_abs_err(back, video) < 3.0
    assert mean_abs_err(interior(back), interior(video)) < 2.0
  info = probe(path)
  assert (info["height"], info["width"], info["frames"]) == (h, w, 6)
  assert info["fps"] == pytest.approx(8.0)
  assert info["codec"] == "h264"
  assert info["duration_s"] == pytest.approx(6 / 8)
  assert info["rotation"] == 0


def test_mp4_pixel_format_by_parity(tmp_path):
  # yuv420p (plays everywhere) for even sizes; yuv444p only where 4:2:0 is impossible.
  for (h, w), fmt in {(16, 16): "yuv420p", (15, 16): "yuv444p", (16, 15): "yuv444p"}.items():
    path = tmp_path / f"p{h}x{w}.mp4"
    write_mp4(path, flat_clip(2, h, w), fps=8)
    with av.open(str(path)) as c:
      cc = c.streams.video[0].codec_context
      assert cc.pix_fmt == fmt
      assert cc.colorspace == 1  # tagged BT.709, so players and read_video agree


def test_mp4_crf_controls_quality(tmp_path):
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)  # noise: crf matters a lot
  errs = {}
  for crf in (10, 40):
    write_mp4(tmp_path / f"c{crf}.mp4", video, crf=crf)
    errs[crf] = mean_abs_err(read_video(tmp_path / f"c{crf}.mp4"), video)
  assert errs[10] < errs[40]


def test_mp4_accepts_pathlike_and_fractional_fps(tmp_path):
  path = tmp_path / "ntsc.mp4"
  write_mp4(path, flat_clip(3, 16, 16), fps=30000 / 1001)
  assert probe(path)["fps"] == pytest.approx(29.97, abs=0.01)


def test_gif_round_trip_exact_palette(tmp_path):
  video = flat_clip(5, 24, 40)  # 10 distinct colours: the GIF palette holds them exactly
  path = tmp_path / "clip.gif"
  write_gif(path, video, fps=8)
  back = read_video(path)
  assert back.shape == video.shape
  np.testing.assert_array_equal(back, video)
  info = probe(path)
  assert info["codec"] == "gif" and (info["height"], info["width"]) == (24, 40)
  assert info["fps"] == pytest.approx(8.0, rel=0.1)  # delays are whole centiseconds


def test_gif_round_trip_many_colours(tmp_path):
  # A smooth gradient with far more than 256 colours goes through the median-cut palette.
  t, h, w = 3, 32, 48
  yy, xx = np.mgrid[0:h, 0:w]
  frame = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 255 // (h + w - 2)], -1)
  video = np.repeat(frame[None], t, 0).astype(np.uint8)
  video[1] = 255 - video[1]
  path = tmp_path / "grad.gif"
  write_gif(path, video, fps=10)
  back = read_video(path)
  assert back.shape == video.shape
  assert mean_abs_err(back, video) < 6.0


# ----------------------------------------------------------------------------------------------
# Reading options
# ----------------------------------------------------------------------------------------------


def test_fps_resampling_halves_frames(mp4_16fps):
  full = read_video(mp4_16fps)
  half = read_video(mp4_16fps, fps=8)
  assert len(full) == 20 and len(half) == 10
  # Nearest frame by timestamp: 8 fps output frame k is source frame 2k.
  np.testing.assert_array_equal(half, full[::2])


def test_fps_resampling_up_repeats_frames(mp4_16fps):
  full = read_video(mp4_16fps)
  double = read_video(mp4_16fps, fps=32)
  assert len(double) == 40
  np.testing.assert_array_equal(double, np.repeat(full, 2, axis=0))  # ties go to the earlier frame


def test_fps_resampling_odd_ratio(mp4_16fps):
  # 20 frames at 16 fps last 1.25 s; at 6 fps that is targets 0, 1/6, ..., 7/6 -> 8 frames.
  full = read_video(mp4_16fps)
  out = read_video(mp4_16fps, fps=6)
  assert len(out) == 8
  expected = [round(16 * k / 6) for k in range(8)]  # nearest source index (no ties at 16/6)
  np.testing.assert_array_equal(out, full[expected])


def test_max_frames(mp4_16fps):
  assert read_video(mp4_16fps, max_frames=5).shape[0] == 5
  assert read_video(mp4_16fps, fps=8, max_frames=3).shape[0] == 3
  assert read_video(mp4_16fps, max_frames=1000).shape[0] == 20


@pytest.mark.parametrize("size", [(32, 32), (24, 64), (48, 20), (96, 128), (7, 9)], ids=str)
def test_resize_and_centre_crop(mp4_16fps, size):
  out = read_video(mp4_16fps, size=size, max_frames=4)
  assert out.shape == (4, *size, 3)
  assert out.dtype == np.uint8


def test_resize_keeps_aspect_then_crops(tmp_path):
  # 32x64 source, columns: 0-7 red, 8-23 green, 24-31 red, 32-63 blue. Asking for 16x16 scales
  # by 1/2 to 16x32 and keeps scaled columns 8-23 (source 16-47): green 0-3, red 4-7, blue 8-15.
  # Squashing the whole frame to 16x16 instead would put red at column 1.
  video = np.zeros((2, 32, 64, 3), np.uint8)
  video[:, :, :32] = (200, 40, 40)
  video[:, :, 32:] = (40, 40, 200)
  video[:, :, 8:24] = (40, 200, 40)
  path = tmp_path / "halves.mp4"
  write_mp4(path, video, crf=10)
  out = read_video(path, size=(16, 16))
  assert out.shape == (2, 16, 16, 3)
  assert out[0, 8, 1, 1] > 150 and out[0, 8, 1, 0] < 100  # green
  assert out[0, 8, 6, 0] > 150  # red
  assert out[0, 8, 12, 2] > 150  # blue


def test_reads_other_containers(tmp_path):
  video = flat_clip(10, 32, 48)
  path = str(tmp_path / "clip.mkv")
  _write_with_pyav(path, "matroska", video)
  back = read_video(path)
  assert back.shape == video.shape and mean_abs_err(back, video) < 3.0
  info = probe(path)
  assert info["frames"] is None  # Matroska has no frame count
  assert info["duration_s"] == pytest.approx(10 / 8)
  assert read_video(path, fps=np.float32(4)).shape[0] == 5  # numpy scalars are fine


def test_rotation_from_container_is_applied(tmp_path):
  # Phone videos store a display rotation; read_video returns them upright like a player would.
  video = flat_clip(3, 16, 32)
  path = str(tmp_path / "rot.mp4")
  _write_with_pyav(path, "mp4", video, rotation=90)
  out = read_video(path)
  assert out.shape == (3, 32, 16, 3)
  assert mean_abs_err(out, np.rot90(video, 1, axes=(1, 2))) < 4.0
  info = probe(path)
  assert (info["height"], info["width"], info["rotation"]) == (32, 16, 90)
  assert read_video(path, size=(16, 16)).shape == (3, 16, 16, 3)


@pytest.mark.parametrize(
  "kwargs",
  [{"fps": 0}, {"fps": -1}, {"size": (0, 4)}, {"size": (4,)}, {"max_frames": 0}],
  ids=str,
)
def test_bad_read_arguments_raise_value_error(mp4_16fps, kwargs):
  with pytest.raises(ValueError) as info:
    read_video(mp4_16fps, **kwargs)
  assert not isinstance(info.value, VideoReadError)


# ----------------------------------------------------------------------------------------------
# Writing: validation and atomicity
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "video, match",
  [
    (np.zeros((2, 8, 8, 3), np.float32), "dtype uint8"),
    (np.zeros((8, 8, 3), np.uint8), r"shape \[T, H, W, 3\]"),
    (np.zeros((2, 8, 8, 4), np.uint8), r"shape \[T, H, W, 3\]"),
    (np.zeros((0, 8, 8, 3), np.uint8), "T, H, W >= 1"),
    ([[[[0, 0, 0]]]], "numpy array"),
  ],
  ids=["float", "3d", "rgba", "no-frames", "list"],
)
@pytest.mark.parametrize("writer", [write_mp4, write_gif], ids=["mp4", "gif"])
def test_write_rejects_bad_input(tmp_path, writer, video, match):
  with pytest.raises(ValueError, match=match):
    writer(tmp_path / "x.out", video)
  assert os.listdir(tmp_path) == []


def test_write_rejects_bad_fps_and_crf(tmp_path):
  with pytest.raises(ValueError, match="fps"):
    write_mp4(tmp_path / "a.mp4", flat_clip(1, 8, 8), fps=0)
  with pytest.raises(ValueError, match="crf"):
    write_mp4(tmp_path / "a.mp4", flat_clip(1, 8, 8), crf=60)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    write_mp4(tmp_path / "no" / "such" / "dir.mp4", flat_clip(1, 8, 8))
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("writer, name", [(write_mp4, "out.mp4"), (write_gif, "out.gif")])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, writer, name):
  path = tmp_path / name
  path.write_bytes(b"previous good file")
  real_encode = video_write._encode

  def encode_then_fail(container, stream, frames):
    def some_frames():
      for i, f in enumerate(frames):
        if i == 3:
          raise RuntimeError("simulated encoder crash")
        yield f

    real_encode(container, stream, some_frames())

  monkeypatch.setattr(video_write, "_encode", encode_then_fail)
  with pytest.raises(RuntimeError, match="simulated encoder crash"):
    writer(path, flat_clip(8, 16, 16))
  # The old file is untouched and no temp file is left in the directory.
  assert os.listdir(tmp_path) == [name]
  assert path.read_bytes() == b"previous good file"


def test_successful_write_replaces_and_has_normal_permissions(tmp_path):
  path = tmp_path / "out.mp4"
  path.write_bytes(b"old")
  write_mp4(path, flat_clip(2, 8, 8))
  assert os.listdir(tmp_path) == ["out.mp4"]
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
  assert read_video(path).shape == (2, 8, 8, 3)


def _write_with_pyav(path: str, fmt: str, video: np.ndarray, rotation: int = 0) -> None:
  """Plain H.264 writer (no faststart, no colour tags), independent of the code under test."""
  with av.open(path, "w", format=fmt) as c:
    s = c.add_stream("libx264", rate=8)
    s.width, s.height, s.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
    if rotation:
      s.set_display_rotation(rotation)
    for i, f in enumerate(video):
      frame = av.VideoFrame.from_ndarray(f, format="rgb24")
      frame.pts = i
      c.mux(s.encode(frame))
    c.mux(s.encode(None))



# ----------------------------------------------------------------------------------------------
# Crop position and the in-memory twins (resize_crop, resample_fps)
# ----------------------------------------------------------------------------------------------


def _three_bands(t: int = 3) -> np.ndarray:
  """uint8 [t, 32, 96, 3]: red, green, blue vertical bands of 32 columns each."""
  video = np.zeros((t, 32, 96, 3), np.uint8)
  video[:, :, :32] = (200, 40, 40)
  video[:, :, 32:64] = (40, 200, 40)
  video[:, :, 64:] = (40, 40, 200)
  return video


@pytest.mark.parametrize("pos, channel", [((0.5, 0.0), 0), ((0.5, 0.5), 1), ((0.5, 1.0), 2)])
def test_crop_pos_picks_the_window(tmp_path, pos, channel):
  video = _three_bands()
  path = tmp_path / "bands.mp4"
  write_mp4(path, video, crf=10)
  from_file = read_video(path, size=(16, 16), crop_pos=pos)  # 32x96 -> 16x48, 16 wide window
  in_memory = resize_crop(video, 16, 16, crop_pos=pos)
  for out in (from_file, in_memory):
    assert out.shape == (3, 16, 16, 3)
    assert out[:, 4:12, 4:12, channel].min() > 150  # well inside the band, away from the codec
  assert mean_abs_err(from_file, in_memory) < 4.0
  assert mean_abs_err(interior(read_video(path, size=(16, 16))), interior(
    read_video(path, size=(16, 16), crop_pos=(0.5, 0.5)))) == 0  # the default is the centre


def test_resize_crop_shapes_dtypes_and_identity():
  video = flat_clip(2, 24, 40)
  assert resize_crop(video, 24, 40) is not video
  np.testing.assert_array_equal(resize_crop(video, 24, 40), video)  # same size: a copy
  grown = resize_crop(video, 48, 80)
  assert grown.shape == (2, 48, 80, 3) and grown.dtype == np.uint8
  # Shrinking by 4 averages whole 4x4 blocks: a flat frame stays exactly that colour.
  np.testing.assert_array_equal(resize_crop(video[:, 12:, 20:], 3, 5), np.broadcast_to(
    video[:, -1:, -1:], (2, 3, 5, 3)))
  out = resize_crop(video.astype(np.float32) / 255, 10, 10)
  assert out.dtype == np.float32 and out.shape == (2, 10, 10, 3)
  tall = resize_crop(np.zeros((1, 100, 10, 1), np.uint8), 8, 8)  # 1 channel, very tall
  assert tall.shape == (1, 8, 8, 1)


@pytest.mark.parametrize(
  "kwargs, match",
  [({"crop_pos": (0.5, 1.5)}, "crop_pos"), ({"crop_pos": "cc"}, "crop_pos"),
   ({"crop_pos": (0.5,)}, "crop_pos"), ({"height": 0}, "size")],
)
def test_resize_crop_and_read_video_reject_bad_crop(mp4_16fps, kwargs, match):
  args = {"height": 8, "width": 8} | kwargs
  with pytest.raises(ValueError, match=match):
    resize_crop(flat_clip(1, 8, 8), **args)
  if "crop_pos" in kwargs:
    with pytest.raises(ValueError, match="crop_pos"):
      read_video(mp4_16fps, size=(8, 8), crop_pos=kwargs["crop_pos"])


@pytest.mark.parametrize("fps", [4, 8, 10, 16, 24, 29.97])
def test_resample_fps_matches_read_video(mp4_16fps, fps):
  # Each frame of mp4_16fps is one flat colour, so frames are identified by their mean colour.
  src = read_video(mp4_16fps)  # [20, 48, 64, 3] at 16 fps
  from_file = read_video(mp4_16fps, fps=fps)
  in_memory = resample_fps(src, 16, fps)
  assert in_memory.shape == from_file.shape
  np.testing.assert_array_equal(in_memory, from_file)


def test_resample_fps_rules():
  clip = np.arange(8)  # frame i is i; any [T, ...] array works
  assert resample_fps(clip, 8, 4).tolist() == [0, 2, 4, 6]
  assert resample_fps(clip, 8, 16).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
  assert resample_fps(clip, 8, 3).tolist() == [0, 3, 5]  # 2.67 -> 3, 5.33 -> 5
  assert resample_fps(clip, 8, 5.333333333).tolist() == [0, 1, 3, 4, 6, 7]  # 1.5 -> 1: ties go early
  with pytest.raises(ValueError, match="src_fps"):
    resample_fps(clip, 0, 8)
  with pytest.raises(ValueError, match="T >= 1"):
    resample_fps(np.zeros((0, 2)), 8, 8)
