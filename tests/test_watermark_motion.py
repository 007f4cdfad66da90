"""The watermark that follows a camera pan (WatermarkConfig.follow_motion, safety/motion.py)."""

import numpy as np
import pytest
from scipy import ndimage

from sorax.data import world
from sorax.safety import attacks
from sorax.safety.motion import global_motion
from sorax.safety.watermark import Watermark, WatermarkConfig, luma, payload


def pan(seed, h=64, w=64, t=12, velocity=(2, -1)):
  """A textured clip whose content moves by `velocity` px a frame, plus sensor noise."""
  rng = np.random.default_rng(seed)
  pad = 2 * t * max(abs(v) for v in velocity) + 8
  base = rng.normal(size=(h + 2 * pad, w + 2 * pad, 3))
  base = ndimage.gaussian_filter(base, (6, 6, 0)) * 400 + ndimage.gaussian_filter(base, (1.5, 1.5, 0)) * 60
  frames = [base[pad - velocity[0] * k:pad - velocity[0] * k + h,
                 pad - velocity[1] * k:pad - velocity[1] * k + w] for k in range(t)]
  noisy = np.stack(frames) + 128 + rng.normal(0, 2, (t, h, w, 3))
  return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def test_global_motion_of_a_pan_is_exact():
  for velocity in ((2, -1), (0, 3), (-1, 0)):
    d = global_motion(luma(pan(0, velocity=velocity)))
    np.testing.assert_allclose(d, np.arange(12)[:, None] * np.array(velocity), atol=0.2)


def test_global_motion_follows_a_subpixel_pan():
  # A band-limited texture moved by 0.5 px a frame (Fourier shift): integer peaks cannot see it.
  rng = np.random.default_rng(1)
  tex = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 3) * 600 + 128
  frames = np.stack([ndimage.fourier_shift(np.fft.fft2(tex), (0.0, 0.5 * k)) for k in range(9)])
  d = global_motion(np.fft.ifft2(frames).real)
  np.testing.assert_allclose(d[-1], [0.0, 4.0], atol=0.5)


def test_objects_moving_on_a_flat_background_are_not_a_pan():
  rng = np.random.default_rng(2)
  for _ in range(4):
    video = world.render(world.random_spec(rng, 64, 64, 12), 64, 64, 12)
    assert np.abs(global_motion(luma(video))).max() < 0.5


def test_global_motion_rejects_a_wrong_shape():
  with pytest.raises(ValueError, match=r"luma \[T, H, W\]"):
    global_motion(np.zeros((4, 4, 4, 3)))


def test_follow_motion_is_the_static_mark_on_static_content():
  video = world.render(world.random_spec(np.random.default_rng(3), 64, 64, 8), 64, 64, 8)
  bits = payload(7, 8)
  moving = Watermark(WatermarkConfig(follow_motion=True))
  np.testing.assert_array_equal(moving.embed(video, bits), Watermark().embed(video, bits))
  assert moving.detect(moving.embed(video, bits))["payload"] == {"model_id": 7, "generation_id": 8}


def test_mark_that_follows_the_pan_survives_h264_crf28():
  # The static mark is lost here: P-frames copy the moving content and quantize the mark away.
  video = pan(4, h=128, w=128, t=16)
  bits = payload(0xBEEF, 12345)
  moving, static = Watermark(WatermarkConfig(follow_motion=True)), Watermark()
  got = moving.detect(attacks.h264(moving.embed(video, bits), 28))
  assert got["present"] and got["payload_valid"]
  assert got["payload"] == {"model_id": 0xBEEF, "generation_id": 12345}
  assert static.detect(attacks.h264(static.embed(video, bits), 28))["score"] < got["score"]
  # The embedder and the detector must agree: the static detector misses the moving mark.
  assert not static.detect(moving.embed(video, bits))["present"]


def test_safety_settings_carry_follow_motion_to_embed_and_detect():
  from sorax.safety.guard import safety_config, watermark_from
  assert not watermark_from(safety_config().watermark).cfg.follow_motion
  cfg = safety_config(None, ["--safety.watermark.follow_motion=True"])
  assert watermark_from(cfg.watermark).cfg.follow_motion
