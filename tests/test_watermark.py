"""Invisible watermark: payload round trip, PSNR, robustness to each attack, no false alarms.

The full measurement (bit accuracy and detection rate per attack, the false-positive rate over
thousands of clips) is benchmarks/watermark_robustness.py; these are small, fast versions.
"""

import numpy as np
import pytest

from sorax.data import world
from sorax.safety import attacks
from sorax.safety.watermark import Watermark, WatermarkConfig, crc8, payload, psnr, unpack


@pytest.fixture(scope="module")
def mark():
  return Watermark()


def clip(seed, h=64, w=64, t=16):
  rng = np.random.default_rng(seed)
  return world.render(world.random_spec(rng, h, w, t), h, w, t)


def test_payload_and_crc():
  bits = payload(0xBEEF, 0x12345678)
  assert bits.shape == (48,) and unpack(bits) == {"model_id": 0xBEEF, "generation_id": 0x12345678}
  # CRC-8 (poly 0x07) check value of "123456789" is 0xF4.
  msg = np.unpackbits(np.frombuffer(b"123456789", np.uint8))
  assert int("".join(map(str, crc8(msg))), 2) == 0xF4
  with pytest.raises(ValueError, match="16 bits"):
    payload(1 << 16, 0)


def test_embed_is_invisible_and_reads_back(mark):
  for seed in range(3):
    video = clip(seed)
    bits = payload(seed, 1000 + seed)
    marked = mark.embed(video, bits)
    assert marked.shape == video.shape and marked.dtype == np.uint8
    assert psnr(video, marked) >= 38.0
    d = mark.detect(marked)
    assert d["present"] and d["payload_valid"] and d["payload"] == unpack(bits)
    assert d["confidence"] > 0.999


def test_unmarked_and_wrong_key_are_not_detected(mark):
  other = Watermark(WatermarkConfig(key=1234))
  for seed in range(12):
    video = clip(100 + seed)
    d = mark.detect(video)
    assert not d["present"] and d["payload"] is None and d["score"] < mark.cfg.threshold
    assert not other.detect(mark.embed(video, payload(1, 2)))["present"]


@pytest.mark.parametrize("attack", ["h264_crf23", "h264_crf28", "downscale_0.5", "crop_10",
                                    "drop_frames_33", "brighter", "darker"])
def test_survives_attack(mark, attack):
  rng = np.random.default_rng(5)
  hits, bit_acc = 0, []
  for seed in range(3):
    bits = payload(seed + 1, 77 + seed)
    d = mark.detect(attacks.ATTACKS[attack](mark.embed(clip(200 + seed, 96, 96, 16), bits), rng))
    hits += d["present"]
    bit_acc.append(np.mean(np.array(list(d["bits"]), int) == bits))
  assert hits == 3 and np.mean(bit_acc) >= 0.95, (hits, bit_acc)


def test_image_and_bad_input(mark):
  img = clip(3)[0]
  marked = mark.embed(img, payload(3, 4))
  assert marked.shape == img.shape
  assert mark.detect(marked)["present"]
  with pytest.raises(ValueError, match="uint8"):
    mark.embed(img.astype(np.float32), payload(3, 4))
  with pytest.raises(ValueError, match="48 bits"):
    mark.embed(img, np.zeros(10, np.uint8))
  with pytest.raises(ValueError, match="power of two"):
    WatermarkConfig(tile=30)


def test_convolutional_code_corrects_errors():
  from sorax.safety import ecc
  rng = np.random.default_rng(0)
  bits = rng.integers(0, 2, 56).astype(np.uint8)
  coded = ecc.encode(bits)
  assert len(coded) == ecc.coded_length(56) == 124
  soft = 1.0 - 2.0 * coded
  np.testing.assert_array_equal(ecc.decode(soft), bits)
  flipped = soft.copy()
  flipped[::12] *= -1  # 11 of 124 coded bits wrong, spread out: all corrected
  np.testing.assert_array_equal(ecc.decode(flipped), bits)
  weak = soft * 0.2
  weak[5] = -1.0  # one confident wrong bit among weak right ones is outvoted
  np.testing.assert_array_equal(ecc.decode(weak), bits)
