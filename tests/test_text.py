import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax.models.text import BOS_ID, PAD_ID, TextEncoder, Tokenizer


def test_any_text_encodes_and_round_trips():
  tok = Tokenizer()
  for text in ["large red circle moving right on a navy background",
               "a purple elephant 🐘 juggling naïvely", "", "   "]:
    ids, mask = tok.encode([text], 64)
    assert ids[0, 0] == BOS_ID and mask[0, 0]
    assert (ids[0][mask[0]] != PAD_ID).all() and (ids[0][~mask[0]] == PAD_ID).all()
    assert tok.decode(ids[0]) == text.strip() or text.strip() == ""
  assert tok.encode(["x" * 500], 16)[1].sum() == 16  # truncated, not an error


def test_world_words_are_pieces_not_bytes():
  tok = Tokenizer()
  ids, mask = tok.encode(["small cyan diamond falling on a navy background"], 64)
  assert mask.sum() <= 12  # whole words, not byte fallback


def test_missing_model_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="tokenizer model .* not found"):
    Tokenizer(tmp_path / "nope.model")
  with pytest.raises(TypeError, match="sequence of strings"):
    Tokenizer().encode("one string", 8)


def test_encoder_ignores_padding():
  tok = Tokenizer()
  enc = TextEncoder(tok.vocab_size, 32, 1, 2, rngs=nnx.Rngs(0))
  ids, mask = tok.encode(["red circle"], 12)
  out = enc(jnp.asarray(ids), jnp.asarray(mask))
  ids2 = ids.copy()
  ids2[~mask] = 7  # garbage in padded slots
  out2 = enc(jnp.asarray(ids2), jnp.asarray(mask))
  n = int(mask.sum())
  np.testing.assert_allclose(out[:, :n], out2[:, :n], atol=1e-5)
  assert out.shape == (1, 12, 32)


def test_shipped_tokenizer_is_rebuilt_exactly_by_the_build_command(tmp_path):
  # Guards against drift: if world captions change, `sorax build-tokenizer` must be rerun.
  from sorax.models.text import DEFAULT_TOKENIZER, train_tokenizer
  out = train_tokenizer(tmp_path / "sp.model")
  assert out.read_bytes() == DEFAULT_TOKENIZER.read_bytes()
