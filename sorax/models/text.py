"""Text: a sentencepiece tokenizer trained on world captions and a small transformer encoder.

The encoder is trained jointly with the DiT. Anything that maps (ids, mask) -> [B, L, width]
features implements `TextEncoderLike`, so a frozen large encoder (e.g. T5/UMT5) can replace it.

Rebuild the shipped tokenizer with `python -m sorax.models.text` (deterministic).
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm
from flax import nnx

from sorax.models import layers

DEFAULT_TOKENIZER = pathlib.Path(__file__).resolve().parent.parent / "assets" / "world_sp.model"
PAD_ID, UNK_ID, BOS_ID = 0, 1, 2


class Tokenizer:
  """sentencepiece with byte fallback: any text (unknown words, emoji) encodes."""

  null_tokens = (BOS_ID,)  # the empty prompt
  def __init__(self, model_path: str | os.PathLike = DEFAULT_TOKENIZER):
    path = pathlib.Path(model_path)
    if not path.is_file():
      raise FileNotFoundError(
          f"tokenizer model {path} not found; build it with `python -m sorax.models.text`")
    self.path = path
    self.sp = spm.SentencePieceProcessor(model_file=str(path))

  @property
  def vocab_size(self) -> int:
    return self.sp.get_piece_size()

  def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """-> ids int32 [B, max_len] (BOS first, truncated, PAD after), mask bool [B, max_len].

    BOS is always present, so an empty prompt (the classifier-free-guidance null) still has
    one valid key for cross-attention.
    """
    if isinstance(texts, str):
      raise TypeError("encode takes a sequence of strings, not one string")
    ids = np.full((len(texts), max_len), PAD_ID, np.int32)
    for i, text in enumerate(texts):
      pieces = [BOS_ID] + self.sp.encode(str(text))[: max_len - 1]
      ids[i, : len(pieces)] = pieces
    return ids, ids != PAD_ID

  def decode(self, ids: Sequence[int]) -> str:
    return self.sp.decode([int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID)])


def null_text(ids: jax.Array, tokens: Sequence[int] = (BOS_ID,)
              ) -> tuple[jax.Array, jax.Array]:
  """The empty prompt shaped like ids [B, L]: the unconditional branch of CFG. `tokens` is the
  tokenizer's encoding of "" (`Tokenizer.null_tokens`: BOS for ours, [CLS] [SEP] for MiniLM's)."""
  null = jnp.full_like(ids, PAD_ID)
  for i, tok in enumerate(tokens):
    null = null.at[:, i].set(tok)
  return null, null != PAD_ID


def train_tokenizer(out_path: str | os.PathLike = DEFAULT_TOKENIZER, *, num_clips: int = 6000,
                    vocab_size: int = 512, seed: int = 0) -> pathlib.Path:
  """Trains the world tokenizer on all three caption levels of `num_clips` random specs."""
  from sorax.data import world  # local: the world is only needed to build the file

  rng = np.random.default_rng(seed)
  sentences = []
  for _ in range(num_clips):
    spec = world.random_spec(rng, 64, 64, 16)
    sentences.extend(world.caption(spec, level, rng) for level in world.CAPTION_LEVELS)
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
      model_type="unigram", byte_fallback=True, character_coverage=1.0, pad_id=PAD_ID,
      unk_id=UNK_ID, bos_id=BOS_ID, eos_id=-1, num_threads=1, shuffle_input_sentence=False,
      minloglevel=2, hard_vocab_limit=False)
  out = pathlib.Path(out_path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_suffix(".tmp")
  tmp.write_bytes(model.getvalue())
  os.replace(tmp, out)
  return out


class TextEncoderLike(Protocol):
  width: int

  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """ids int [B, L], mask bool [B, L] -> features [B, L, width]."""


class TextBlock(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype, param_dtype):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.norm1 = layers.layer_norm(width, rngs=rngs, **kw)
    self.attn = layers.Attention(width, heads, rngs=rngs, **kw)
    self.norm2 = layers.layer_norm(width, rngs=rngs, **kw)
    self.mlp = layers.MLP(width, 4 * width, rngs=rngs, **kw)

  def __call__(self, x, rope, mask):
    x = x + self.attn(self.norm1(x), rope=rope, mask=mask)
    return x + self.mlp(self.norm2(x))


class TextEncoder(nnx.Module):
  """Small pre-LN transformer over token ids with 1D RoPE and a padding mask."""

  def __init__(self, vocab_size: int, width: int = 128, depth: int = 2, heads: int = 4, *,
               rngs: nnx.Rngs, dtype: str = "float32", param_dtype: str = "float32"):
    self.width, self.heads = width, heads
    dt, pdt = jnp.dtype(dtype), jnp.dtype(param_dtype)
    # Rows padded to a multiple of 128 so the table shards over any tensor axis size.
    self.embed = nnx.Embed(
        -(-vocab_size // 128) * 128, width, dtype=dt, param_dtype=pdt, rngs=rngs,
        embedding_init=layers.partitioned(nnx.initializers.normal(0.02), ("vocab", "text_embed")))
    self.blocks = nnx.List([TextBlock(width, heads, rngs=rngs, dtype=dt, param_dtype=pdt)
                            for _ in range(depth)])
    self.norm = layers.layer_norm(width, rngs=rngs, dtype=dt, param_dtype=pdt)

  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    x = self.embed(ids)
    pos = jnp.broadcast_to(jnp.arange(ids.shape[1])[None, :, None], ids.shape + (1,))
    rope = layers.rope_angles(pos, self.width // self.heads)
    for block in self.blocks:
      x = block(x, rope, mask)
    return self.norm(x).astype(jnp.float32)


if __name__ == "__main__":
  print(train_tokenizer())
