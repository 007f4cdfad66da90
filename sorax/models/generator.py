"""The text-to-video velocity model: text encoder + DiT, trained together."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
from flax import nnx

from sorax.models.codec import CODEC_KEYS, make_codec
from sorax.models.dit import DiT, DiTConfig
from sorax.models.text import DEFAULT_TOKENIZER, TextEncoder, Tokenizer


TEXT_ENCODERS = ("sorax", "minilm")
FROZEN_TEXT = ("minilm",)  # pretrained encoders kept as they are: no gradient, no update


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  dit: DiTConfig
  vocab_size: int
  text_depth: int = 2
  text_heads: int = 4
  # "sorax": a small encoder trained with the DiT on our own tokenizer; "minilm": the pretrained
  # all-MiniLM-L6-v2 (sorax/models/minilm.py, its WordPiece tokenizer), frozen.
  text_encoder: str = "sorax"

  def __post_init__(self):
    if self.text_encoder not in TEXT_ENCODERS:
      raise ValueError(f"unknown model.text_encoder {self.text_encoder!r}; choose from "
                       f"{list(TEXT_ENCODERS)}")


class Generator(nnx.Module):
  def __init__(self, cfg: GeneratorConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    if cfg.text_encoder == "minilm":  # zeros here; the trainer copies the pretrained weights in
      from sorax.models.minilm import BertConfig, MiniLM  # noqa: PLC0415
      self.text = MiniLM(BertConfig())
    else:
      self.text = TextEncoder(cfg.vocab_size, cfg.dit.text_width, cfg.text_depth,
                              cfg.text_heads, rngs=rngs, dtype=cfg.dit.dtype,
                              param_dtype=cfg.dit.param_dtype)
    self.dit = DiT(cfg.dit, rngs=rngs)

  def encode_text(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    h = self.text(ids, mask)
    return jax.lax.stop_gradient(h) if self.cfg.text_encoder in FROZEN_TEXT else h

  def __call__(self, x: jax.Array, positions: jax.Array, t: jax.Array, ids: jax.Array,
               mask: jax.Array, token_mask: jax.Array | None = None, *,
               return_logits: bool = False, x0_prev: jax.Array | None = None):
    """x [B, N, P], positions [B, N, 3], t [B], ids/mask [B, L] -> the DiT's output [B, N, P]
    (and its palette logits with return_logits: DiT.__call__)."""
    return self.dit(x, positions, t, self.encode_text(ids, mask), mask, token_mask,
                    return_logits=return_logits, x0_prev=x0_prev)


def palette_latent(cfg) -> tuple[tuple[float, ...], ...]:
  """model.palette (RGB uint8 colours) in the codec's latent units, for the palette head; empty
  when off. Only a pixel codec (space_to_depth) keeps a pixel's colour as its latent."""
  if not cfg.model.get("palette_head", False):
    return ()
  colours = [tuple(c) for c in cfg.model.get("palette", ())]
  if not colours:
    raise ValueError("model.palette_head needs model.palette (RGB colours)")
  if cfg.codec.name != "space_to_depth":
    raise ValueError(f"model.palette needs the pixel codec (space_to_depth), not "
                     f"{cfg.codec.name!r}: a learned latent does not hold a pixel's colour")
  if cfg.diffusion.prediction != "x0":
    raise ValueError("model.palette predicts x0 (the expected colour); set "
                     "diffusion.prediction='x0'")
  for c in colours:
    if len(c) != 3 or not all(0 <= v <= 255 for v in c):
      raise ValueError(f"model.palette colour {c} is not an RGB triple in [0, 255]")
  scale = float(cfg.codec.scale)
  return tuple(tuple(round((v / 127.5 - 1.0) * scale, 6) for v in c) for c in colours)


def make_codec_from(cfg, latent_stats: dict | None = None):
  """The run config's codec (`cfg.codec`); a VAE codec normalizes with `latent_stats`
  ({"mean", "std"})."""
  keys = CODEC_KEYS.get(cfg.codec.name, ())
  kw = {k: v for k, v in cfg.codec.items() if k in keys}
  codec = make_codec(cfg.codec.name, **kw)
  if latent_stats is not None:
    codec = codec.with_stats(latent_stats["mean"], latent_stats["std"])
  return codec


def generator_config(cfg, vocab_size: int) -> GeneratorConfig:
  """The model of a run config (`cfg.model`, `cfg.codec`): what training builds and a weights
  file describes."""
  m = cfg.model
  codec = make_codec_from(cfg)
  text_encoder = m.get("text_encoder", "sorax")
  text_width = m.text_width
  if text_encoder == "minilm":  # the DiT reads MiniLM's hidden states as they are
    from sorax.models.minilm import BertConfig  # noqa: PLC0415
    text_width = BertConfig().width
  pt, ph, pw = m.patch
  attention = None if m.attention in ("auto", "", None) else m.attention
  dit = DiTConfig(
      token_dim=pt * ph * pw * codec.channels, width=m.width, depth=m.depth, heads=m.heads,
      mlp_ratio=m.mlp_ratio, text_width=text_width, qk_norm=m.qk_norm, dtype=m.dtype,
      param_dtype=m.param_dtype, attention=attention, scan_layers=m.scan_layers, remat=m.remat,
      head_hidden=m.get("head_hidden", 0), abs_pos=bool(m.get("abs_pos", False)),
      pooled_text=bool(m.get("pooled_text", False)), mlp_dim=m.get("mlp_dim", 0),
      attn_bias=m.get("attn_bias", False), qk_norm_over=m.get("qk_norm_over", "head"),
      head_modulation=m.get("head_modulation", "adaln"), slots=m.get("slots", 0),
      slot_depth=m.get("slot_depth", 2), slot_classes=tuple(m.get("slot_classes", ())) if m.get("slots", 0) else (),
      palette=palette_latent(cfg), self_cond=bool(m.get("self_cond", False)))
  return GeneratorConfig(dit=dit, vocab_size=vocab_size, text_depth=m.text_depth,
                         text_heads=m.text_heads, text_encoder=text_encoder)


def text_tokenizer(cfg, workdir=None):
  """The tokenizer of a run config's text encoder: MiniLM's WordPiece for "minilm"; else ours
  (`workdir`/tokenizer.model when a training workdir has one, else cfg.tokenizer or the shipped
  one)."""
  if cfg.model.get("text_encoder", "sorax") == "minilm":
    from sorax.models.minilm import MiniLMTokenizer  # noqa: PLC0415
    return MiniLMTokenizer()
  local = pathlib.Path(workdir) / "tokenizer.model" if workdir is not None else None
  return Tokenizer(local if local is not None and local.exists() else
                   (cfg.tokenizer or DEFAULT_TOKENIZER))


def palette_head_from_linear(kernel: np.ndarray, bias: np.ndarray,
                             palette: tuple[tuple[float, ...], ...], tau: float
                             ) -> tuple[np.ndarray, np.ndarray]:
  """A palette head that starts as a trained linear x0 head snapped to the palette.

  The linear head predicts each pixel's colour x_p = W_p^T f + b_p (kernel [D, pixels * C],
  bias [pixels * C], C fastest). Since -|x - c_k|^2 = 2 x.c_k - |c_k|^2 - |x|^2 and softmax
  ignores the last term, logits_pk = (2 x_p.c_k - |c_k|^2) / tau are linear in f: the palette
  head with this kernel [D, pixels * K] and bias [pixels * K] gives the softmax over the colours
  nearest to the old prediction, at temperature tau (tau -> 0: the nearest colour).
  """
  pal = np.asarray(palette, np.float64)                      # [K, C]
  c_n = pal.shape[1]
  d = kernel.shape[0]
  w = np.asarray(kernel, np.float64).reshape(d, -1, c_n)     # [D, pixels, C]
  b = np.asarray(bias, np.float64).reshape(-1, c_n)          # [pixels, C]
  new_w = 2.0 * np.einsum("dpc,kc->dpk", w, pal) / tau       # [D, pixels, K]
  new_b = (2.0 * b @ pal.T - (pal ** 2).sum(-1)) / tau       # [pixels, K]
  return (new_w.reshape(d, -1).astype(np.float32), new_b.reshape(-1).astype(np.float32))
