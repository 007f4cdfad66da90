import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax import config as config_lib
from sorax.models.dit import DiT, DiTConfig
from sorax.parallel.mesh import make_mesh, rules_from_config, state_shardings
from sorax.train import state as state_lib
from tests.test_config import WORLD


def _inputs(b=2, n=12, p=8, l=5, tw=16):
  k = jax.random.split(jax.random.PRNGKey(0), 3)
  pos = jnp.stack(jnp.meshgrid(jnp.arange(3), jnp.arange(2), jnp.arange(2), indexing="ij"), -1)
  pos = jnp.broadcast_to(pos.reshape(-1, 3), (b, n, 3))
  return (jax.random.normal(k[0], (b, n, p)), pos, jnp.array([0.2, 0.9]),
          jax.random.normal(k[1], (b, l, tw)), jnp.ones((b, l), bool))


def test_adaln_zero_starts_at_zero_velocity():
  m = DiT(DiTConfig(token_dim=8, width=32, depth=2, heads=2, text_width=16), rngs=nnx.Rngs(0))
  out = m(*_inputs())
  assert out.shape == (2, 12, 8) and float(jnp.abs(out).max()) == 0.0


def _perturbed(cfg):
  m = DiT(cfg, rngs=nnx.Rngs(0))
  # Move every zero-initialised weight so the blocks actually do something.
  state = nnx.state(m)
  leaves, tree = jax.tree.flatten(state)
  # numpy noise: eager jax.random would compile one program per leaf shape (~6 s a model).
  rng = np.random.default_rng(3)
  leaves = [l + 0.05 * rng.standard_normal(l.shape).astype(np.float32) for l in leaves]
  nnx.update(m, jax.tree.unflatten(tree, leaves))
  return m


def test_scan_and_loop_agree_and_remat_is_exact():
  base = dict(token_dim=8, width=32, depth=3, heads=2, text_width=16)
  scanned = _perturbed(DiTConfig(**base, scan_layers=True))
  out = scanned(*_inputs())
  looped = DiT(DiTConfig(**base, scan_layers=False), rngs=nnx.Rngs(0))
  s_state = nnx.state(scanned)
  blocks = s_state["blocks"]
  l_state = nnx.state(looped)
  for i in range(3):
    l_state["blocks"][i] = jax.tree.map(lambda x: x[i], blocks)
  for k in s_state:
    if k != "blocks":
      l_state[k] = s_state[k]
  nnx.update(looped, l_state)
  np.testing.assert_allclose(looped(*_inputs()), out, atol=1e-5)
  remat = _perturbed(DiTConfig(**base, scan_layers=True, remat="full"))
  np.testing.assert_allclose(remat(*_inputs()), out, atol=1e-6)


def test_text_and_time_change_the_output():
  m = _perturbed(DiTConfig(token_dim=8, width=32, depth=2, heads=2, text_width=16))
  x, pos, t, txt, mask = _inputs()
  out = m(x, pos, t, txt, mask)
  assert not np.allclose(m(x, pos, t, txt * -1, mask), out, atol=1e-4)
  assert not np.allclose(m(x, pos, t * 0.1, txt, mask), out, atol=1e-4)


def test_mlp_head_starts_as_the_linear_head_and_then_leaves_its_subspace():
  base = dict(token_dim=8, width=4, depth=1, heads=2, text_width=16)
  linear = _perturbed(DiTConfig(**base))
  headed = DiT(DiTConfig(**base, head_hidden=16), rngs=nnx.Rngs(1))
  state = nnx.state(headed)
  for k, v in nnx.state(linear).items():
    state[k] = v  # the trained model's weights; head_out keeps its zero init
  nnx.update(headed, state)
  inputs = _inputs()
  np.testing.assert_array_equal(headed(*inputs), linear(*inputs))
  # The linear head's outputs span at most `width` (4) of the 8 patch dimensions; the MLP head
  # (once trained) does not stay in that subspace.
  rank = lambda out: np.linalg.matrix_rank(np.asarray(out).reshape(-1, 8), tol=1e-4)
  assert rank(linear(*inputs)) <= 5  # width + the bias
  headed.head_out.kernel.value = 0.3 * jax.random.normal(jax.random.PRNGKey(5), (16, 8))
  assert rank(headed(*inputs)) == 8


def test_every_parameter_has_logical_axes():
  m = DiT(DiTConfig(token_dim=8, width=32, depth=2, heads=2, text_width=16), rngs=nnx.Rngs(0))
  specs = jax.tree.leaves(nnx.get_partition_spec(nnx.state(m)),
                          is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  params = jax.tree.leaves(nnx.state(m))
  assert len(specs) == len(params)
  for spec, p in zip(specs, params):
    assert len(spec) == p.ndim and all(a is not None for a in spec), spec


def test_bad_config_is_a_clear_error():
  with pytest.raises(ValueError, match="not divisible by heads"):
    DiTConfig(token_dim=8, width=30, heads=4)
  with pytest.raises(ValueError, match="unknown remat policy"):
    DiTConfig(token_dim=8, remat="sometimes")


def test_base_config_shapes_without_allocating():
  cfg = config_lib.load_config(f"{WORLD}:base")
  graphdef, abstract = state_lib.abstract_model(cfg, 512)
  n = sum(x.size for x in jax.tree.leaves(abstract))
  assert 30e6 < n < 80e6
  mesh = make_mesh({"data": 2, "fsdp": 4}, jax.devices()[:8])
  sh = state_shardings(abstract, mesh, rules_from_config(cfg.mesh.rules))
  wq = sh["dit"]["blocks"]["attn"]["wq"]
  wq = jax.tree.leaves(wq, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))[0]
  # [layers, embed, heads, kv]: embed is FSDP-sharded, heads tensor-parallel.
  assert wq.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)


def test_position_features_read_canvas_fractions_and_the_frame_index():
  from sorax.models import layers
  pos = jnp.stack(jnp.meshgrid(jnp.arange(3), jnp.arange(2), jnp.arange(4), indexing="ij"), -1)
  pos = pos.reshape(1, -1, 3)
  f = layers.position_features(pos)
  assert f.shape == (1, 24, 6 * layers.POS_FREQS)
  # Every token has its own features (translation is no longer invisible).
  assert len({tuple(np.round(np.asarray(r), 5)) for r in f[0]}) == 24
  # Space is a fraction of the canvas: the same grid cell at twice the resolution (its centre
  # token pair) reads near the same, and padding (token_mask False) does not stretch the canvas.
  padded = jnp.concatenate([pos, jnp.full((1, 4, 3), 9)], 1)
  mask = jnp.arange(28)[None] < 24
  np.testing.assert_allclose(layers.position_features(padded, mask)[:, :24], f, atol=1e-6)
  # Time is the frame index: the first frames read the same in a longer clip.
  longer = jnp.stack(jnp.meshgrid(jnp.arange(6), jnp.arange(2), jnp.arange(4), indexing="ij"),
                     -1).reshape(1, -1, 3)
  np.testing.assert_allclose(layers.position_features(longer)[:, :24], f, atol=1e-6)


def _with_option(base: dict, **option):
  """(a trained-looking DiT, the same DiT with `option` added): the added layer keeps its zero
  init, every other parameter is copied."""
  plain = _perturbed(DiTConfig(**base))
  grown = DiT(DiTConfig(**base, **option), rngs=nnx.Rngs(1))
  state = nnx.state(grown)
  for k, v in nnx.state(plain).items():
    state[k] = v
  nnx.update(grown, state)
  return plain, grown


def test_abs_pos_starts_as_the_model_without_it_and_then_breaks_translation():
  base = dict(token_dim=8, width=32, depth=1, heads=2, text_width=16)
  plain, posed = _with_option(base, abs_pos=True)
  x, pos, t, txt, mask = _inputs()
  np.testing.assert_array_equal(posed(x, pos, t, txt, mask), plain(x, pos, t, txt, mask))
  # Without abs_pos, equal tokens at different places differ only through RoPE; a shift of
  # every position by a constant changes nothing. With abs_pos (trained) it does.
  shifted = pos + jnp.array([0, 0, 0])
  shifted = shifted.at[..., 0].add(5)
  np.testing.assert_allclose(plain(x, shifted, t, txt, mask), plain(x, pos, t, txt, mask),
                             atol=1e-4)
  posed.pos_embed.kernel.value = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (48, 32))
  assert not np.allclose(posed(x, shifted, t, txt, mask), posed(x, pos, t, txt, mask), atol=1e-3)


def test_pooled_text_starts_as_the_model_without_it_and_then_reaches_every_token():
  """Zero-initialised, so a trained model keeps its function when it is added; once trained the
  text changes the output through it; padded text tokens do not count."""
  base = dict(token_dim=8, width=32, depth=1, heads=2, text_width=16)
  plain, pooled = _with_option(base, pooled_text=True)
  x, pos, t, txt, mask = _inputs()
  np.testing.assert_array_equal(pooled(x, pos, t, txt, mask), plain(x, pos, t, txt, mask))
  pooled.text_pool.kernel.value = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (16, 32))
  other = txt + 1.0
  assert not np.allclose(pooled(x, pos, t, other, mask), pooled(x, pos, t, txt, mask), atol=1e-3)
  # Padding: changing the text where the mask is False changes nothing (pool and attention).
  short = mask.at[:, -2:].set(False)
  padded = jnp.where(short[..., None], txt, 5.0)
  np.testing.assert_allclose(pooled(x, pos, t, padded, short), pooled(x, pos, t, txt, short),
                             atol=1e-5)
  assert not np.allclose(pooled(x, pos, t, txt, short), pooled(x, pos, t, txt, mask), atol=1e-3)


def test_slots_read_the_text_and_start_as_extra_keys():
  """model.slots: the slots join the text as keys and feed the adaLN (zero-initialised), the
  attribute heads read them, and padded text tokens change nothing."""
  cfg = DiTConfig(token_dim=8, width=32, depth=1, heads=2, text_width=16, slots=4,
                  slot_classes=(3, 2))
  m = _perturbed(cfg)
  x, pos, t, txt, mask = _inputs()
  logits = m.slot_logits(txt, mask)
  assert logits.shape == (2, 4, 5)
  # The slots follow the text (and so does the velocity).
  assert not np.allclose(m.slot_logits(txt + 1.0, mask), logits, atol=1e-3)
  assert not np.allclose(m(x, pos, t, txt + 1.0, mask), m(x, pos, t, txt, mask), atol=1e-3)
  short = mask.at[:, -2:].set(False)
  padded = jnp.where(short[..., None], txt, 5.0)
  np.testing.assert_allclose(m(x, pos, t, padded, short), m(x, pos, t, txt, short), atol=1e-5)
  np.testing.assert_allclose(m.slot_logits(padded, short), m.slot_logits(txt, short), atol=1e-5)
  plain = DiT(DiTConfig(token_dim=8, width=32, depth=1, heads=2, text_width=16), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="slot_logits needs"):
    plain.slot_logits(txt, mask)


def test_self_conditioning_starts_at_zero_and_none_means_zeros():
  """model.self_cond: the x0_prev projection is zero-initialised and bias-free, so at init the
  estimate changes nothing, and None is exactly zeros; once trained, the estimate is read."""
  cfg = DiTConfig(token_dim=8, width=32, depth=1, heads=2, text_width=16, self_cond=True)
  x, pos, t, txt, mask = _inputs()
  fresh = DiT(cfg, rngs=nnx.Rngs(0))
  prev = jax.random.normal(jax.random.PRNGKey(5), x.shape)
  np.testing.assert_array_equal(fresh(x, pos, t, txt, mask, x0_prev=prev),
                                fresh(x, pos, t, txt, mask))
  m = _perturbed(cfg)
  np.testing.assert_array_equal(m(x, pos, t, txt, mask, x0_prev=jnp.zeros_like(x)),
                                m(x, pos, t, txt, mask))
  assert not np.allclose(m(x, pos, t, txt, mask, x0_prev=prev), m(x, pos, t, txt, mask),
                         atol=1e-3)


def test_palette_head_from_linear_snaps_the_linear_prediction_to_the_nearest_colour():
  """The derived palette head's logits rank the colours by distance to the linear head's
  prediction, so its expectation tends to the nearest colour as tau -> 0."""
  from sorax.models.generator import palette_head_from_linear
  rng = np.random.default_rng(0)
  d, pixels, c = 8, 4, 3
  palette = tuple(tuple(float(v) for v in row) for row in rng.uniform(-1.5, 1.5, (5, c)))
  kernel, bias = rng.normal(size=(d, pixels * c)), rng.normal(size=(pixels * c,)) * 0.1
  f = rng.normal(size=(16, d))
  x = (f @ kernel + bias).reshape(16, pixels, c)
  pal = np.asarray(palette)
  nearest = ((x[..., None, :] - pal) ** 2).sum(-1).argmin(-1)           # [16, pixels]
  w, b = palette_head_from_linear(kernel, bias, palette, tau=1e-3)
  assert w.shape == (d, pixels * 5) and b.shape == (pixels * 5,)
  logits = (f @ w + b).reshape(16, pixels, 5)
  np.testing.assert_array_equal(logits.argmax(-1), nearest)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  expected = (probs / probs.sum(-1, keepdims=True)) @ pal
  np.testing.assert_allclose(expected, pal[nearest], atol=1e-3)


def test_palette_x0_is_the_expected_palette_colour():
  from sorax.models.dit import palette_x0
  pal = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]], np.float32)  # K = 2 colours, C = 3
  logits = np.zeros((1, 2, 4, 2), np.float32)  # [B, N, pixels, K]
  logits[0, 1, :, 1] = 50.0  # token 1: certainly colour 1
  x0 = np.asarray(palette_x0(jnp.asarray(logits), pal))
  assert x0.shape == (1, 2, 12)
  np.testing.assert_allclose(x0[0, 0].reshape(4, 3), np.tile(pal.mean(0), (4, 1)), atol=1e-6)
  np.testing.assert_allclose(x0[0, 1].reshape(4, 3), np.tile(pal[1], (4, 1)), atol=1e-6)
