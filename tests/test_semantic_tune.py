"""The policy encoder's fine-tuned top (sorax/safety/semantic_tune.py) on a tiny random MiniLM:
the functional layers match the model's own, several layers train, and a file storing the kernels
as pretrained + a low-rank delta reads back to what was trained."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax.models import minilm
from sorax.safety import semantic_tune as st

CFG = minilm.BertConfig(vocab_size=40, width=24, depth=3, heads=12, mlp=48, max_positions=16)


def tiny_model(seed: int = 0) -> minilm.MiniLM:
  model = minilm.MiniLM(CFG)  # zeros: the port loads its weights from a file
  rng = np.random.default_rng(seed)
  graphdef, state = nnx.split(model)
  state = jax.tree.map(lambda v: jnp.asarray(rng.normal(0, 0.3, v.shape), jnp.float32), state)
  return nnx.merge(graphdef, state)


class Tokens:
  """A tokenizer stand-in: one id per character."""

  def encode(self, texts, max_len):
    n = min(max_len, max(len(t) for t in texts) + 2)
    ids, mask = np.zeros((len(texts), n), np.int32), np.zeros((len(texts), n), bool)
    for i, t in enumerate(texts):
      row = [1] + [2 + ord(c) % 30 for c in t][:n - 2] + [1]
      ids[i, :len(row)], mask[i, :len(row)] = row, True
    return ids, mask


TEXTS = ["abc", "a longer text", "zz", "hello world!"]


@pytest.mark.parametrize("top", [1, 2, 3])
def test_cached_states_and_functional_top_match_the_model(top):
  model = tiny_model()
  states = st.lower_states(model, Tokens(), TEXTS, max_len=16, top=top)
  p = st.layer_params(model) if top == 1 else st.top_params(model, top)
  ours = st.embed_states(p, states, np.arange(len(TEXTS)))
  ids, mask = Tokens().encode(TEXTS, 16)
  want = np.asarray(model.embed(jnp.asarray(ids), jnp.asarray(mask)))
  np.testing.assert_allclose(ours, want, atol=1e-5)


def test_low_rank_is_exact_on_a_low_rank_delta_and_optimal_otherwise():
  rng = np.random.default_rng(1)
  d = rng.normal(size=(24, 3)) @ rng.normal(size=(3, 48))
  a, b = st.low_rank(d, 3)
  assert a.shape == (24, 3) and b.shape == (3, 48)
  np.testing.assert_allclose(a @ b, d, atol=1e-5)
  full = rng.normal(size=(24, 48))
  s = np.linalg.svd(full, compute_uv=False)
  a, b = st.low_rank(full, 5)  # Eckart-Young: the error is the dropped singular values
  np.testing.assert_allclose(np.linalg.norm(full - a @ b), np.sqrt((s[5:] ** 2).sum()), rtol=1e-4)


def test_two_layers_train_and_separate_their_rows():
  model = tiny_model()
  texts = [f"{w} {i}" for i in range(6) for w in ("aaaa", "qqqq")]
  y = np.array([0, 1] * 6)
  states = st.lower_states(model, Tokens(), texts, max_len=16, top=2)
  p0 = st.top_params(model, 2)
  idx = np.arange(len(texts))
  w0, b0 = np.zeros((CFG.width, 2), np.float32), np.zeros(2, np.float32)
  p, w, b, _ = st.finetune(p0, w0, b0, states, idx, y, 2,
                           st.FT(epochs=30, lr=3e-3, head_lr=3e-2, batch=4, top=2))
  assert len(p) == 2
  moved = [float(jnp.abs(q["q"]["kernel"] - q0["q"]["kernel"]).max()) for q, q0 in zip(p, p0)]
  assert min(moved) > 0  # both layers trained, not only the last
  pred = np.argmax(st.embed_states(p, states, idx) @ w + b, -1)
  assert (pred == y).all()


def test_benign_weight_moves_the_head_toward_benign():
  # Overlapping rows (the same words in both classes): no head separates them, so the class
  # weights decide where the probability goes; a heavier benign class (class 0) takes more.
  model = tiny_model(1)
  texts = [f"{w} {i}" for i in range(8) for w in ("abab", "abba")]
  y = np.array([0, 1] * 8)
  y[::5] = 1 - y[::5]
  states = st.lower_states(model, Tokens(), texts, max_len=16, top=1)
  p0 = st.top_params(model, 1)
  idx = np.arange(len(texts))
  w0, b0 = np.zeros((CFG.width, 2), np.float32), np.zeros(2, np.float32)
  p_benign = []
  for bw in (1.0, 4.0):
    p, w, b, _ = st.finetune(p0, w0, b0, states, idx, y, 2,
                             st.FT(epochs=10, lr=1e-3, head_lr=1e-2, batch=4, top=1,
                                   benign_weight=bw))
    z = st.embed_states(p, states, idx) @ w + b
    p_benign.append(float(jax.nn.softmax(z, -1)[:, 0].mean()))
  assert p_benign[1] > p_benign[0] + 0.05, p_benign


def test_low_rank_file_reads_back_what_was_trained(tmp_path):
  model = tiny_model()
  base = st.top_params(model, 2)
  rng = np.random.default_rng(2)
  tuned = jax.tree.map(np.asarray, base)
  for layer in tuned:  # a rank-2 change to every kernel, a full change to every bias
    for n in ("q", "k", "v", "o", "up", "down"):
      k = layer[n]["kernel"]
      layer[n]["kernel"] = k + 0.1 * rng.normal(size=(k.shape[0], 2)) @ rng.normal(size=(2, k.shape[1]))
      layer[n]["bias"] = layer[n]["bias"] + 0.1
  w, b = rng.normal(size=(CFG.width, 3)), rng.normal(size=3)
  classes, ex = ("benign", "x", "y"), (("a", "benign"), ("b", "x"), ("c", "y"))
  small, dense = tmp_path / "small.safetensors", tmp_path / "dense.safetensors"
  st.save(small, tuned, w, b, classes, ex, "sha", st.FT(top=2, store_rank=2), base=base)
  st.save(dense, tuned, w, b, classes, ex, "sha", st.FT(top=2, store_rank=0))
  assert small.stat().st_size < dense.stat().st_size
  for path in (small, dense):
    top = st.load(path, base=model)
    assert len(top.layer) == 2 and top.classes == classes
    for got, want in zip(top.layer, tuned):
      for n, d in want.items():
        for t, v in d.items():  # float16 storage
          np.testing.assert_allclose(got[n][t], v, atol=2e-3 * (1 + np.abs(v).max()), err_msg=n)
  with pytest.raises(ValueError, match="needs the pretrained"):
    st.save(tmp_path / "x.safetensors", tuned, w, b, classes, ex, "sha", st.FT(top=2))


def test_one_layer_files_keep_their_names(tmp_path):
  model = tiny_model()
  p = st.layer_params(model)
  path = tmp_path / "one.safetensors"
  st.save(path, p, np.zeros((CFG.width, 2)), np.zeros(2), ("benign", "x"),
          (("a", "benign"), ("b", "x")), "sha", st.FT(top=1, store_rank=0))
  from safetensors import safe_open
  with safe_open(str(path), "np") as f:
    assert "layer.q.kernel" in f.keys() and not any(k.startswith("layer-") for k in f.keys())
  top = st.load(path)
  assert isinstance(top.layer, dict)
  np.testing.assert_allclose(top.layer["up"]["kernel"], p["up"]["kernel"], atol=2e-3)
