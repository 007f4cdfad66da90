"""Ghost copies (sorax/train/ghosts.py): a shifted copy of each clip's objects in the input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sorax.data import world
from sorax.train.ghosts import ghost_video
from sorax.train.step import object_mask
from sorax.train.trainer import Trainer
from tests.test_train import tiny


def clips():
  spec = world.SceneSpec(background="navy", wall=False, objects=(
      world.ObjectSpec("red", "square", "large", "right", start=(0.3, 0.5)),))
  return jnp.asarray(np.stack([world.render(spec, 32, 32, 3)] * 4))


def test_a_copy_lands_only_where_shifted_object_pixels_land():
  video = clips()
  objects = object_mask(video)
  out = np.asarray(ghost_video(jax.random.key(0), video, objects, max_alpha=0.6, max_shift=8))
  v = np.asarray(video, np.float32)
  assert out.shape == v.shape and out.min() >= 0 and out.max() <= 255
  changed = np.any(out != v, axis=-1)  # [B, T, H, W]
  for b in range(len(v)):
    assert changed[b].any()  # every clip gets a copy (shift never (0, 0), alpha > 0 a.s.)
    # The change is a blend towards red of a red-sized patch: some red pixels moved.
    red = np.array(world.OBJECT_COLORS["red"], np.float32)
    d_old, d_new = (np.abs(x[changed[b]] - red).sum(-1) for x in (v[b], out[b]))
    assert np.all(d_new <= d_old + 1e-3)
    # Where no object pixel lands the clip is untouched, and a copy has the object's size.
    assert changed[b].sum() <= objects[b].sum()


def test_zero_strength_returns_the_clip():
  video = clips()
  out = ghost_video(jax.random.key(1), video, object_mask(video), max_alpha=0.0, max_shift=4)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(video, np.float32))
  with pytest.raises(ValueError, match="must be"):
    ghost_video(jax.random.key(1), video[0], object_mask(video)[0], max_alpha=0.5, max_shift=4)


def test_ghosts_need_x0_prediction(tmp_path):
  # Trained (x0-prediction, palette head) in tests/test_train.py test_palette_head_outputs_...
  with pytest.raises(ValueError, match="ghost_rate needs x0-prediction"):
    Trainer(tiny("--config.diffusion.ghost_rate=0.5",
                 "--config.diffusion.prediction=velocity"), tmp_path)
