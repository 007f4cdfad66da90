"""The parameter-free space-to-depth codec, causal mode included (frame 0 alone, then groups)."""

import jax.numpy as jnp
import numpy as np
import pytest

from sorax.models.codec import SpaceToDepthCodec


@pytest.mark.parametrize("frames", [1, 3, 9, 17])
def test_causal_fold_is_lossless_and_keeps_frame_zero_alone(frames):
  c = SpaceToDepthCodec(temporal=2, spatial=4, causal=True)
  rng = np.random.default_rng(frames)
  x = jnp.asarray(rng.uniform(-1, 1, (2, frames, 8, 12, 3)), jnp.float32)
  z = c.encode(x)
  assert z.shape == (2,) + c.latent_shape(frames, 8, 12) == (2, (frames + 1) // 2, 2, 3, 96)
  np.testing.assert_allclose(np.asarray(c.decode(z)), np.asarray(x), atol=1e-6)
  # Latent frame 0 depends on video frame 0 only.
  y = x.at[:, 1:].set(0.0)
  np.testing.assert_array_equal(np.asarray(c.encode(y)[:, 0]), np.asarray(z[:, 0]))


def test_causal_fold_refuses_other_lengths():
  c = SpaceToDepthCodec(temporal=2, spatial=4, causal=True)
  with pytest.raises(ValueError, match="frames=4 is not 1 \\+ 2\\*k"):
    c.latent_shape(4, 8, 8)
  with pytest.raises(ValueError, match="height=6"):
    c.latent_shape(3, 6, 8)


def test_fold_maps_pixel_maps_like_the_latent():
  c = SpaceToDepthCodec(temporal=2, spatial=4, causal=True)
  w = jnp.zeros((1, 3, 8, 8, 3)).at[0, 2, 0, 0, :].set(1.0)  # one pixel of frame 2
  f = np.asarray(c.fold(w))
  assert f.shape == (1, 2, 2, 2, 96) and f.sum() == 3 and f[0, 1, 0, 0].sum() == 3
