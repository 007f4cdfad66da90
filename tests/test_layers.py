import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax.models import layers


def test_rope_depends_only_on_relative_position():
  k = 24
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, k)), jnp.float32)
  kk = jnp.asarray(rng.normal(size=(1, 1, 1, k)), jnp.float32)

  def score(pq, pk):
    aq = layers.rope_angles(jnp.asarray([[pq]]), k)
    ak = layers.rope_angles(jnp.asarray([[pk]]), k)
    return float(jnp.sum(layers.apply_rope(q, aq) * layers.apply_rope(kk, ak)))

  base = score((1, 2, 3), (4, 0, 7))
  shift = (5, -3, 11)
  moved = score(tuple(a + s for a, s in zip((1, 2, 3), shift)),
                tuple(a + s for a, s in zip((4, 0, 7), shift)))
  assert moved == pytest.approx(base, rel=1e-4, abs=1e-4)
  # ...and it does depend on the offset along every axis.
  for axis in range(3):
    other = list((4, 0, 7))
    other[axis] += 1
    assert abs(score((1, 2, 3), tuple(other)) - base) > 1e-3


def test_rope_preserves_norm_and_is_identity_at_zero():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3, 12))
  pos = jax.random.randint(jax.random.PRNGKey(1), (2, 5, 3), 0, 50)
  y = layers.apply_rope(x, layers.rope_angles(pos, 12))
  np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  z = layers.apply_rope(x, layers.rope_angles(jnp.zeros_like(pos), 12))
  np.testing.assert_allclose(z, x, rtol=1e-6)


def test_rope_axis_split():
  assert layers.rope_axis_dims(64, 3) == (24, 20, 20)
  assert sum(layers.rope_axis_dims(48, 3)) == 48
  with pytest.raises(ValueError, match="even head_dim"):
    layers.rope_axis_dims(7, 1)


def test_attention_mask_hides_padding_keys():
  attn = layers.Attention(16, 2, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 4, 16))
  ctx = jax.random.normal(jax.random.PRNGKey(1), (1, 6, 16))
  mask = jnp.array([[True, True, True, False, False, False]])
  out = attn(x, context=ctx, mask=mask)
  # Changing the masked keys changes nothing.
  ctx2 = ctx.at[:, 3:].set(100.0)
  np.testing.assert_allclose(attn(x, context=ctx2, mask=mask), out, atol=1e-5)
  assert not np.allclose(attn(x, context=ctx2), attn(x, context=ctx), atol=1e-3)


def test_timestep_embedding_shape_and_range():
  e = layers.timestep_embedding(jnp.array([0.0, 0.5, 1.0]), 32)
  assert e.shape == (3, 32) and float(jnp.abs(e).max()) <= 1.0
