"""Causal 3D VAE: shapes, causality, chunked == whole, errors, a tiny training run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax.models import vae as V

CFG = V.VAEConfig(latent_channels=4, patch=2, widths=(8, 16), spatial_down=(True,),
                  temporal_down=(True,), blocks=1)


def _model(cfg=CFG, seed=0):
  """A VAE with random weights on every conv (its zero-initialized ones too), so every path
  carries signal. Filled from numpy on eval_shape'd params: eager init and perturbation compile
  one tiny XLA program per op and shape, ~30 s on two CPU cores."""
  g, s = nnx.split(nnx.eval_shape(lambda: V.VAE(cfg, rngs=nnx.Rngs(seed))))
  rng = np.random.default_rng(seed)
  def fill(path, x):
    noise = 0.1 * rng.standard_normal(x.shape, dtype=np.float32)
    return jnp.asarray(1.0 + noise if "scale" in jax.tree_util.keystr(path) else noise)
  return nnx.merge(g, jax.tree_util.tree_map_with_path(fill, s))


def _video(t=9, h=16, w=16, b=2, seed=0):
  return jax.random.uniform(jax.random.key(seed), (b, t, h, w, 3), minval=-1, maxval=1)


def test_factors_and_shapes():
  assert (CFG.spatial, CFG.temporal) == (4, 2)
  big = V.VAEConfig()
  assert (big.spatial, big.temporal, big.latent_channels) == (8, 4, 16)
  m = _model()
  z = m.encode(_video(t=9))
  assert z.shape == (2, 5, 4, 4, 4)
  y, _ = m.decode(z)
  assert y.shape == (2, 9, 16, 16, 3)
  assert m.encode(_video(t=1)).shape == (2, 1, 4, 4, 4)  # an image is a one-frame video


@pytest.mark.parametrize("frames,latent", [(1, 1), (2, 2), (3, 2), (8, 5), (9, 5), (10, 6)])
def test_latent_frames_and_padding(frames, latent):
  assert V.latent_frames(frames, 2) == latent
  x = _video(t=frames, b=1)
  p = V.pad_frames(x, 2)
  assert p.shape[1] == V.video_frames(latent, 2)
  np.testing.assert_array_equal(p[:, :frames], x)
  np.testing.assert_array_equal(p[:, frames:], jnp.broadcast_to(x[:, -1:], p[:, frames:].shape))


def test_first_frame_encoded_alone_and_causal():
  m = _model()
  x = _video(t=9)
  z = m.encode(x)
  np.testing.assert_allclose(m.encode(x[:, :1])[:, 0], z[:, 0], atol=1e-5)
  # Changing frame 5 (latent frame 3 holds frames 5, 6) leaves latent frames 0..2 alone.
  z2 = m.encode(x.at[:, 5].set(0.0))
  np.testing.assert_allclose(z2[:, :3], z[:, :3], atol=1e-6)
  assert float(jnp.abs(z2[:, 3:] - z[:, 3:]).max()) > 1e-3
  # Decoder: changing latent frame 3 leaves output frames 0..4 alone.
  y, _ = m.decode(z)
  y2, _ = m.decode(z.at[:, 3].add(1.0))
  np.testing.assert_allclose(y2[:, :5], y[:, :5], atol=1e-6)
  assert float(jnp.abs(y2[:, 5:] - y[:, 5:]).max()) > 1e-3


@pytest.mark.parametrize("cfg", [CFG, V.VAEConfig(latent_channels=4, patch=1, widths=(8, 8, 16),
                                                  spatial_down=(True, False),
                                                  temporal_down=(True, True), blocks=1),
                                 V.VAEConfig(latent_channels=4, patch=2, widths=(8, 16),
                                             encoder_widths=(4, 12), spatial_down=(True,),
                                             temporal_down=(True,), blocks=1, refine=4)])
def test_chunked_equals_whole(cfg):
  m = _model(cfg)
  r = cfg.temporal
  x = _video(t=1 + 4 * r)
  z = m.encode(x)
  for chunk in (r, 2 * r):
    zc = jnp.concatenate(list(V.encode_chunked(m, x, chunk=chunk)), axis=1)
    np.testing.assert_allclose(zc, z, atol=2e-5, rtol=1e-5)
  # Streamed in uneven pieces, as from a file reader.
  pieces = [np.asarray(x[:, :3]), np.asarray(x[:, 3:4]), np.asarray(x[:, 4:])]
  zs = jnp.concatenate(list(V.encode_chunked(m, pieces)), axis=1)
  np.testing.assert_allclose(zs, z, atol=2e-5, rtol=1e-5)
  y, _ = m.decode(z)
  for chunk in (1, 2, 3):
    yc = jnp.concatenate(list(V.decode_chunked(m, z, chunk=chunk)), axis=1)
    assert yc.shape == y.shape
    np.testing.assert_allclose(yc, y, atol=2e-5, rtol=1e-5)


def test_bad_inputs_give_clear_errors():
  m = _model()
  with pytest.raises(ValueError, match="multiples of 4"):
    m.encode(_video(h=18))
  with pytest.raises(ValueError, match=r"1 \+ 2\*k"):
    m.encode(_video(t=4))
  with pytest.raises(ValueError, match=r"\[B, T, H, W, 3\]"):
    m.encode(jnp.zeros((9, 16, 16, 3)))
  with pytest.raises(ValueError, match="causal factor"):
    list(V.encode_chunked(m, _video(t=4)))
  with pytest.raises(ValueError, match="multiple of the temporal factor"):
    list(V.encode_chunked(m, _video(t=9), chunk=3))
  with pytest.raises(ValueError, match="len\\(widths\\)-1"):
    V.VAEConfig(widths=(8, 16), spatial_down=(True, True), temporal_down=(True,))
  with pytest.raises(ValueError, match="encoder_widths needs one width per level"):
    V.VAEConfig(widths=(8, 16), encoder_widths=(8,), spatial_down=(True,), temporal_down=(True,))


def test_lighter_encoder_has_its_own_widths():
  cfg = V.VAEConfig(latent_channels=4, patch=2, widths=(8, 16), encoder_widths=(4, 6),
                    spatial_down=(True,), temporal_down=(True,), blocks=1)
  m = _model(cfg)
  assert m.encoder.conv_in.kernel.shape[-1] == 4 and m.encoder.mid.conv1.kernel.shape[-1] == 6
  assert m.decoder.conv_in.kernel.shape[-1] == 16
  assert m.encode(_video(t=9)).shape == (2, 5, 4, 4, 4)


def test_kl_loss_zero_at_prior():
  z = jnp.zeros((2, 3))
  assert float(V.kl_loss(z, z)) == 0.0
  assert float(V.kl_loss(z + 1.0, z)) == pytest.approx(0.5)


def test_params_carry_logical_axes():
  m = nnx.eval_shape(lambda: V.VAE(CFG, rngs=nnx.Rngs(0)))
  state = nnx.state(m, nnx.Param)
  names = {tuple(v.get_metadata().get("out_sharding") or ())
           for v in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))}
  assert ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out") in names
  assert ("conv_out",) in names
