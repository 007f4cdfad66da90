"""`model.text_encoder = "minilm"`: the pretrained all-MiniLM-L6-v2 as the DiT's frozen text
encoder, with its own tokenizer, through training, checkpoints, weights files and sampling."""

import jax
import numpy as np
import pytest
from flax import traverse_util

from sorax.models import minilm
from sorax.models.text import null_text
from sorax.sample import Pipeline
from sorax.train.trainer import Trainer
from tests.test_train import tiny

try:
  minilm.model_dir()
  HAVE = True
except minilm.MiniLMMissing:
  HAVE = False
pytestmark = pytest.mark.skipif(not HAVE, reason=f"{minilm.PACKAGE} not installed")


def _flat(state):
  from flax import nnx
  return {"/".join(map(str, k)): np.asarray(v) for k, v in
          traverse_util.flatten_dict(nnx.to_pure_dict(jax.device_get(state))).items()}


def test_tokenizer_has_the_sorax_interface():
  tok = minilm.MiniLMTokenizer()
  ids, mask = tok.encode(["small red circle", "x " * 40], 12)
  assert ids.shape == (2, 12) and mask.dtype == bool
  assert ids[0, 0] == 101 and ids[0, mask[0].sum() - 1] == 102  # [CLS] ... [SEP]
  assert mask[1].all() and ids[1, -1] == 102  # truncated, [SEP] kept
  assert tok.null_tokens == (101, 102)
  null, nmask = null_text(ids, tok.null_tokens)
  assert np.asarray(null)[0, :3].tolist() == [101, 102, 0] and np.asarray(nmask).sum() == 4
  assert tok.decode(ids[0]) == "small red circle"  # special tokens dropped, as ours drops BOS


@pytest.mark.slow  # minutes on two cores: run by benchmarks/slow_tests.py
def test_frozen_pretrained_encoder_trains_the_dit_only(tmp_path):
  cfg = tiny("--config.model.text_encoder=minilm", "--config.train.steps=2",
             "--config.train.checkpoint_every=2")
  tr = Trainer(cfg, tmp_path / "run")
  before = _flat(tr.state.params)
  ref = _flat(__import__("flax").nnx.state(minilm.load_minilm()[0]))
  assert all(np.array_equal(before[f"text/{k}"], v) for k, v in ref.items())  # pretrained in
  tr.fit(2, progress=False)
  after = _flat(tr.state.params)
  tr.close()
  text = [k for k in before if k.startswith("text/")]
  dit = [k for k in before if k.startswith("dit/")]
  assert len(text) == len(ref) and all(np.array_equal(before[k], after[k]) for k in text)
  assert any(not np.array_equal(before[k], after[k]) for k in dit)
  assert not (tmp_path / "run" / "tokenizer.model").exists()  # MiniLM's tokenizer is packaged

  pipe = Pipeline.load(tmp_path / "run")  # a workdir, then a weights file: both sample
  assert isinstance(pipe.tokenizer, minilm.MiniLMTokenizer)
  path = pipe.save_weights(tmp_path / "m.safetensors", dtype="float32")
  loaded = Pipeline.from_weights(path)
  assert isinstance(loaded.tokenizer, minilm.MiniLMTokenizer)
  a = pipe.generate(["small red circle"], steps=2, seed=0)
  b = loaded.generate(["small red circle"], steps=2, seed=0)
  assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_unknown_text_encoder_is_refused():
  from sorax.models.generator import generator_config
  with pytest.raises(ValueError, match="text_encoder"):
    generator_config(tiny("--config.model.text_encoder=t5"), 100)
