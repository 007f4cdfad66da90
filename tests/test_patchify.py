import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sorax import patchify as P

dims = st.integers(1, 3)


@settings(max_examples=15, deadline=None)  # each new shape compiles: 40 took 15 s
@given(gt=dims, gh=dims, gw=dims, pt=st.integers(1, 3), ph=st.integers(1, 3),
       pw=st.integers(1, 3), c=st.integers(1, 4))
def test_unpatchify_inverts_patchify(gt, gh, gw, pt, ph, pw, c):
  shape = (gt * pt, gh * ph, gw * pw, c)  # includes odd T and non-square H != W
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  tokens, pos = P.patchify(jnp.asarray(x), (pt, ph, pw))
  assert tokens.shape == (gt * gh * gw, pt * ph * pw * c)
  assert pos.shape == (gt * gh * gw, 3)
  np.testing.assert_array_equal(np.asarray(P.unpatchify(tokens, shape, (pt, ph, pw))), x)


def test_token_holds_its_patch_and_position():
  x = np.arange(3 * 4 * 6 * 2).reshape(3, 4, 6, 2).astype(np.float32)
  tokens, pos = P.patchify(jnp.asarray(x), (1, 2, 3))
  # Token k at position (t, i, j) is the patch x[t, 2i:2i+2, 3j:3j+3, :] in (ph, pw, C) order.
  for k in (0, 5, len(pos) - 1):
    t, i, j = pos[k]
    np.testing.assert_array_equal(np.asarray(tokens[k]), x[t, 2 * i:2 * i + 2, 3 * j:3 * j + 3].ravel())
  assert pos.max(0).tolist() == [2, 1, 1]


def test_not_divisible_is_a_clear_error():
  with pytest.raises(ValueError, match="W=5 is not divisible by patch size 2"):
    P.patchify(jnp.zeros((2, 4, 5, 3)), (1, 2, 2))
  with pytest.raises(ValueError, match=r"must be \[T, H, W, C\]"):
    P.patchify(jnp.zeros((4, 5, 3)), (1, 2, 2))


def test_batch_versions_match_single():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 6, 5))
  tok, pos = P.patchify_batch(x, (1, 2, 2))
  assert tok.shape == (2, 3 * 2 * 3, 20) and pos.shape == (2, 18, 3)
  np.testing.assert_array_equal(np.asarray(tok[1]), np.asarray(P.patchify(x[1], (1, 2, 2))[0]))
  np.testing.assert_array_equal(np.asarray(P.unpatchify_batch(tok, x.shape[1:], (1, 2, 2))),
                                np.asarray(x))


@settings(max_examples=20, deadline=None)
@given(t=st.integers(1, 3), h=st.integers(1, 3), w=st.integers(1, 3), f=st.integers(1, 3))
def test_space_to_depth_is_lossless(t, h, w, f):
  x = np.random.default_rng(1).normal(size=(2, t, h * f, w * f, 3)).astype(np.float32)
  z = P.space_to_depth(jnp.asarray(x), (1, f, f))
  assert z.shape == (2, t, h, w, 3 * f * f)
  np.testing.assert_array_equal(np.asarray(P.depth_to_space(z, (1, f, f))), x)
