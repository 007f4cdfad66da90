"""Model construction from a config, the train state, and its shape-first sharded init."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from sorax.models.generator import (FROZEN_TEXT, Generator, generator_config,  # noqa: F401
                                    make_codec_from)
from sorax.parallel import mesh as mesh_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array       # int32 []
  params: Any           # nnx.State of the Generator
  opt_state: Any        # optax state
  ema: Any              # exponential moving average of params (used for sampling)
  rng: jax.Array        # uint32 [2] base PRNG key; step keys are fold_in(rng, step)


def ema_update(ema: Any, params: Any, decay: float, step: jax.Array, warmup: bool = True) -> Any:
  """EMA with warm-up: the decay ramps as (1 + step) / (10 + step) up to `decay`, so early
  checkpoints' EMA weights are not still mostly the random init. Without `warmup` (a warm
  start: the EMA begins as trained weights worth keeping) the decay is `decay` from step 0;
  the ramp would reach 0.999 only at step 9,000, so a shorter fine-tune's EMA would average
  over far fewer steps than the run it started from."""
  d = jnp.minimum(decay, (1.0 + step) / (10.0 + step)) if warmup else jnp.asarray(decay)
  return jax.tree.map(lambda e, p: e * d + p * (1 - d), ema, params)


def lr_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup, then cosine decay to lr * end_lr_frac at cfg.train.steps ("cosine"), or
  constant after the warmup ("constant": a run of unknown length that may stop at any step;
  its EMA weights are what ships)."""
  o = cfg.optim
  kind = o.get("schedule", "cosine")
  hold = int(o.get("hold_steps", 0))
  if hold < 0 or hold >= max(int(cfg.train.steps), 1):
    raise ValueError(f"optim.hold_steps={hold} must be in [0, train.steps={cfg.train.steps})")
  if kind == "constant":
    base = optax.linear_schedule(0.0, o.lr, max(int(o.warmup_steps), 1))
  elif kind == "cosine":
    steps = max(int(cfg.train.steps) - hold, o.warmup_steps + 1)
    base = optax.warmup_cosine_decay_schedule(
        0.0, o.lr, warmup_steps=o.warmup_steps, decay_steps=steps, end_value=o.lr * o.end_lr_frac)
  else:
    raise ValueError(f"unknown optim.schedule {kind!r}; choose from ['cosine', 'constant']")
  if not hold:
    return base
  # lr 0 first: Adam's moments fill from the loaded weights' own gradients before any step
  # moves them (a warm start's fresh optimizer otherwise takes its first steps on moments
  # estimated from a handful of batches).
  return optax.join_schedules([optax.constant_schedule(0.0), base], [hold])


def make_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  o = cfg.optim
  frozen = cfg.get("model", {}).get("text_encoder", "sorax") in FROZEN_TEXT  # a VAE has none
  # Decay matrices only: norms' scales and biases are left alone. A pretrained (frozen) text
  # encoder is not decayed either; its gradient is zero (Generator.encode_text stops it), so
  # Adam's update for it is exactly zero and it stays as it is.
  def decay_mask(params):
    def decay(path, x):
      first = getattr(path[0], "key", getattr(path[0], "name", None))
      return x.ndim >= 2 and not (frozen and first == "text")
    return jax.tree_util.tree_map_with_path(decay, params)
  if o.get("name", "adamw") == "muon":
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip),
        optax.contrib.muon(lr_schedule(cfg), weight_decay=o.weight_decay,
                           weight_decay_mask=decay_mask, adam_b1=o.b1, adam_b2=o.b2,
                           adam_weight_decay=o.weight_decay,
                           adam_learning_rate=_scaled(lr_schedule(cfg), o.get("adam_lr_ratio", 1.0)),
                           muon_weight_dimension_numbers=muon_dims, consistent_rms=0.2))
  if o.get("name", "adamw") != "adamw":
    raise ValueError(f"unknown optim.name {o.name!r}; choose from ['adamw', 'muon']")
  return optax.chain(
      optax.clip_by_global_norm(o.grad_clip),
      optax.adamw(lr_schedule(cfg), b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                  mask=decay_mask))


def _scaled(schedule: optax.Schedule, ratio: float) -> optax.Schedule:
  return lambda step: ratio * schedule(step)


# Muon orthogonalizes the updates of hidden matrices only; embeddings, the patch embedding, the
# output head and everything not a matrix go through AdamW (Jordan et al. 2024).
_MUON_SKIP = ("embed", "patch_embed", "final_out", "head_out", "time_in", "text_in", "pos_embed",
              "slot_head", "queries")


def muon_dims(params):
  """Per parameter: MuonDimensionNumbers (which axes are the matrix's input and output; the
  rest, e.g. the scanned `layers` axis, are batch) or None (AdamW)."""
  from optax.contrib import MuonDimensionNumbers as Dims  # noqa: PLC0415

  def dims(path, x):
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    if x.ndim < 2 or any(n in _MUON_SKIP for n in names):
      return None
    stacked = "blocks" in names and names[names.index("blocks") + 1:][:1] != [] and \
        not names[names.index("blocks") + 1].isdigit()
    lead = 1 if stacked else 0
    leaf = names[-2] if names[-1] in ("value", "raw_value") else names[-1]
    if leaf in ("wq", "wk", "wv"):  # [.., D, H, K]
      return Dims(reduction_axis=lead, output_axis=(lead + 1, lead + 2))
    if leaf == "wo":  # [.., H, K, D]
      return Dims(reduction_axis=(lead, lead + 1), output_axis=lead + 2)
    if x.ndim - lead == 2:  # a Linear kernel [.., in, out]
      return Dims(reduction_axis=lead, output_axis=lead + 1)
    return None
  return jax.tree_util.tree_map_with_path(dims, params)


def abstract_model(cfg: ml_collections.ConfigDict, vocab_size: int):
  """(graphdef, abstract params State) without allocating anything."""
  gcfg = generator_config(cfg, vocab_size)
  model = nnx.eval_shape(lambda: Generator(gcfg, rngs=nnx.Rngs(cfg.seed)))
  return nnx.split(model)


def init_state(cfg: ml_collections.ConfigDict, vocab_size: int, mesh: Mesh, rules,
               tx: optax.GradientTransformation):
  """The Generator's train state, initialized directly into its shards.

  -> (graphdef, state, state_shardings)
  """
  gcfg = generator_config(cfg, vocab_size)
  return init_model_state(lambda: Generator(gcfg, rngs=nnx.Rngs(cfg.seed)), cfg.seed, mesh,
                          rules, tx)


def init_model_state(make_model: Callable[[], nnx.Module], seed: int, mesh: Mesh, rules,
                     tx: optax.GradientTransformation):
  """Initializes any NNX model's train state directly into its shards (no single-device copy
  first): shapes by eval_shape, logical names -> shardings, then a jitted init with
  out_shardings.

  -> (graphdef, state, state_shardings)
  """
  graphdef, init, _ = _sharded_init(make_model, seed, mesh, rules, tx)
  with jax.set_mesh(mesh):
    state = init()
  return graphdef, state, jax.tree.map(lambda x: x.sharding, state)


def abstract_train_state(make_model: Callable[[], nnx.Module], seed: int, mesh: Mesh, rules,
                         tx: optax.GradientTransformation):
  """What init_model_state would make, as shapes only: nothing is allocated (the memory
  planner, sorax/train/plan.py, compiles the train step on these).

  -> (graphdef, TrainState of jax.ShapeDtypeStruct with shardings, state_shardings)
  """
  graphdef, init, shardings = _sharded_init(make_model, seed, mesh, rules, tx)
  with jax.set_mesh(mesh):
    shapes = jax.eval_shape(init)
  abstract = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                          shapes, shardings)
  return graphdef, abstract, shardings


def _sharded_init(make_model, seed, mesh, rules, tx):
  """-> (graphdef, jitted init() -> TrainState with out_shardings, the TrainState shardings)."""
  graphdef, abstract = nnx.split(nnx.eval_shape(make_model))
  p_sh = mesh_lib.state_shardings(abstract, mesh, rules)
  rep = mesh_lib.replicated(mesh)
  # Optimizer moments are shaped like the params and sharded like them; counters replicate.
  # Masked branches (Muon's AdamW part, say) hold MaskedNode where a param is not theirs.
  masked = lambda x: isinstance(x, optax.MaskedNode)
  opt_sh = optax.tree_map_params(tx, lambda v, s: v if masked(v) else s,
                                 jax.eval_shape(tx.init, abstract), p_sh,
                                 transform_non_params=lambda _: rep, is_leaf=masked)
  shardings = TrainState(step=rep, params=p_sh, opt_state=opt_sh, ema=p_sh, rng=rep)

  @functools.partial(jax.jit, out_shardings=shardings)
  def init():
    params = nnx.state(make_model())
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema=jax.tree.map(jnp.copy, params), rng=jax.random.PRNGKey(seed + 1))

  return graphdef, init, shardings


# The DiT's scanned blocks: every leaf under this path has a leading `layers` axis.
_DIT_BLOCKS = ("dit", "blocks")


def _grown(leaf, other, path) -> np.ndarray | None:
  """`other` [k, ...] (a shallower DiT's stacked blocks) as the first k of `leaf` [n, ...], n > k;
  blocks k.. keep their fresh init, except that their cross-attention output is zeroed. With
  adaLN-zero (zero modulation: zero gates on self-attention and MLP) a fresh block is then the
  identity, so the grown model starts as the shallower one. None where `other` does not fit."""
  if (path[:2] != _DIT_BLOCKS or other.ndim != leaf.ndim or tuple(other.shape[1:]) !=
      tuple(leaf.shape[1:]) or other.shape[0] >= leaf.shape[0]):
    return None
  out = np.array(leaf)
  k = other.shape[0]
  out[:k] = np.asarray(other, dtype=out.dtype)
  if path[2:] == ("cross", "wo"):
    out[k:] = 0
  return out


def warm_start(state: TrainState, source: Any, *,
               grow_depth: bool = False) -> tuple[TrainState, list[str], list[str], list[str]]:
  """Copies the weights of `source` (an nnx.State or pure dict of another run's params) into
  `state`'s params and EMA wherever a path exists in both with the same shape; the rest keep
  their fresh init (e.g. a head the other run did not have). The optimizer state stays fresh.
  `grow_depth`: a source DiT with fewer blocks fills the first ones; the added blocks start as
  the identity (`_grown`), so the deeper model begins where the shallower one ended.

  -> (state, copied paths, fresh paths, unused source paths)
  """
  from flax import traverse_util
  src = traverse_util.flatten_dict(nnx.to_pure_dict(source) if isinstance(source, nnx.State)
                                   else source)
  dst = traverse_util.flatten_dict(nnx.to_pure_dict(state.params))
  copied, fresh, merged = [], [], {}
  for path, leaf in dst.items():
    other = src.get(path)
    grown = _grown(leaf, other, path) if grow_depth and other is not None else None
    if other is not None and tuple(other.shape) == tuple(leaf.shape):
      # A copy: the train step donates its state, and `source` may be a cached model.
      merged[path] = jax.device_put(np.array(other, dtype=leaf.dtype), leaf.sharding)
      copied.append("/".join(map(str, path)))
    elif grown is not None:
      merged[path] = jax.device_put(grown, leaf.sharding)
      copied.append("/".join(map(str, path)))
    else:
      merged[path] = leaf
      fresh.append("/".join(map(str, path)))
  params = jax.tree.map(lambda x: x, state.params)
  nnx.replace_by_pure_dict(params, traverse_util.unflatten_dict(merged))
  ema = jax.tree.map(jnp.copy, params)
  done = set(copied)
  unused = [p for p in ("/".join(map(str, k)) for k in src) if p not in done]
  return state.replace(params=params, ema=ema), copied, fresh, unused
