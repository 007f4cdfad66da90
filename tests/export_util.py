"""Tiny generators with random weights (every parameter non-zero, unlike a fresh init whose
adaLN-zero and output heads are zero), for the export, PyTorch and serving tests."""

import jax
import numpy as np
from flax import nnx

from sorax import config as config_lib
from sorax import patchify as P
from sorax.models.generator import Generator, generator_config
from sorax.models.text import Tokenizer
from sorax.sample import Pipeline
from tests.test_config import WORLD

TINY = ["--config.codec.name=space_to_depth", "--config.codec.temporal=1",
        "--config.codec.causal=False", "--config.model.width=48", "--config.model.depth=3",
        "--config.model.heads=2", "--config.model.text_width=32", "--config.model.text_depth=1",
        "--config.model.text_heads=2", "--config.data.height=16", "--config.data.width=16",
        "--config.data.frames=2", "--config.data.text_len=12", "--config.model.patch=[1,2,2]"]


def randomize(params, seed: int = 0):
  """Every leaf drawn at random: norm scales around 1, everything else ~N(0, 0.15^2)."""
  rng = np.random.default_rng(seed)
  flat = nnx.to_flat_state(params)

  def draw(path, v):
    noise = rng.standard_normal(v.get_value().shape).astype(np.float32)  # v may be abstract
    return (1.0 + 0.1 * noise) if path[-1] == "scale" else 0.15 * noise

  return nnx.from_flat_state([(k, v.replace(jax.numpy.asarray(draw(k, v)))) for k, v in flat])


def random_pipeline(*extra: str, seed: int = 0) -> Pipeline:
  cfg = config_lib.load_config(f"{WORLD}:demo", TINY + list(extra))
  cfg.lock()
  tok = Tokenizer()
  gcfg = generator_config(cfg, tok.vocab_size)
  # Every weight is drawn by randomize: build the model abstractly (no eager init to compile).
  graphdef, params = nnx.split(nnx.eval_shape(lambda: Generator(gcfg, rngs=nnx.Rngs(seed))))
  return Pipeline(cfg=cfg, graphdef=graphdef, params=randomize(params, seed), tokenizer=tok,
                  step=7, policy=None)


def inputs(pipe: Pipeline, batch: int = 2, seed: int = 0,
           prompts=("small red circle moving right", "large blue square on a forest")):
  """Random noisy tokens of the pipeline's canvas, positions, times and encoded prompts."""
  cfg = pipe.cfg
  ls = pipe.latent_shape(cfg.data.frames, cfg.data.height, cfg.data.width)
  patch = tuple(cfg.model.patch)
  pos = P.positions(P.grid_shape(ls, patch))
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch, len(pos), P.token_dim(ls[3], patch))).astype(np.float32)
  t = rng.uniform(0.05, 0.95, (batch,)).astype(np.float32)
  ids, mask = pipe.tokenizer.encode([prompts[i % len(prompts)] for i in range(batch)],
                                    cfg.data.text_len)
  return dict(x=x, positions=np.broadcast_to(pos, (batch,) + pos.shape).copy(), t=t, ids=ids,
              mask=mask)


def jax_forward(pipe: Pipeline, d) -> tuple[np.ndarray, np.ndarray]:
  """-> (text features [B, L, Tw], DiT output [B, N, P]) of the live JAX model."""
  model = nnx.merge(pipe.graphdef, pipe.params)
  text = model.encode_text(d["ids"], d["mask"])
  return np.asarray(text), np.asarray(model.dit(d["x"], d["positions"], d["t"], text, d["mask"]))


def rel_err(got, want) -> float:
  """max |got - want| / max |want|: the parity measure (docs/export_layout.md)."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
