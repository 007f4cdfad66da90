"""The track loss (sorax/train/step.py track_loss): object centres per frame from the palette head."""

import jax.numpy as jnp
import numpy as np
import pytest

from sorax.train.step import pixel_where, track_loss
from sorax.train.trainer import Trainer
from tests.test_train import tiny

T, H, W = 2, 8, 8
IS_OBJECT = jnp.asarray([True, True, False])  # two object colours, one background


def scene(boxes):
  """boxes: {class: [(frame, y, x, size)]} on background class 2 -> labels int [1, N, 1] and
  where [1, N, 1, 3], one pixel a token."""
  lab = np.full((T, H, W), 2, np.int32)
  for k, items in boxes.items():
    for f, y, x, s in items:
      lab[f, y:y + s, x:x + s] = k
  where = pixel_where((1, T, H, W, 3)).reshape(1, -1, 1, 3)
  return jnp.asarray(lab.reshape(1, -1, 1)), where


def logits_of(labels, sharp=30.0):
  return sharp * jnp.eye(3)[labels]  # [1, N, 1, 3]


def test_zero_on_the_true_scene_and_grows_with_the_offset():
  truth, where = scene({0: [(0, 2, 2, 2), (1, 2, 3, 2)], 1: [(0, 5, 5, 2)]})
  assert float(track_loss(logits_of(truth), truth, where, T, IS_OBJECT)) < 1e-6
  losses = []
  for dx in (1, 2, 3):
    drawn, _ = scene({0: [(0, 2, 2, 2), (1, 2, 3 + dx, 2)], 1: [(0, 5, 5, 2)]})
    losses.append(float(track_loss(logits_of(drawn), truth, where, T, IS_OBJECT)))
  # One of three (frame, colour) centres is off by dx px: dx^2 / 8^2 / 3.
  np.testing.assert_allclose(losses, [dx * dx / 64 / 3 for dx in (1, 2, 3)], rtol=1e-2)


def test_backgrounds_absent_colours_and_given_tokens_are_skipped():
  truth, where = scene({0: [(0, 2, 2, 2), (1, 2, 3, 2)]})
  # Colour 1 drawn though absent from the truth, and the background redrawn: no loss.
  drawn, _ = scene({0: [(0, 2, 2, 2), (1, 2, 3, 2)], 1: [(1, 0, 0, 3)]})
  assert float(track_loss(logits_of(drawn), truth, where, T, IS_OBJECT)) < 1e-6
  # Frame 1 drawn off its track, but frame 1's tokens are given (keep False): no loss.
  off, _ = scene({0: [(0, 2, 2, 2), (1, 5, 5, 2)]})
  keep = jnp.asarray(np.arange(T * H * W) < H * W)[None]
  assert float(track_loss(logits_of(off), truth, where, T, IS_OBJECT)) > 0.1
  assert float(track_loss(logits_of(off), truth, where, T, IS_OBJECT, keep)) < 1e-6


def test_track_weight_needs_the_palette_head(tmp_path):
  # Trained with the palette head in tests/test_train_losses.py (test_palette_head_outputs_...).
  with pytest.raises(ValueError, match="track_weight reads tracks from the palette head"):
    Trainer(tiny("--config.diffusion.track_weight=1.0"), tmp_path)
