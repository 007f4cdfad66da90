"""The semantic layer's fine-tuned encoder top: MiniLM's last transformer layers (three by
default) and a softmax head, trained together on the labelled prompt set's training split
(sorax/safety/semantic.py uses them).

Rebuild the shipped file exactly (seeded; about two minutes on two busy CPU cores):

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        python -m sorax.safety.semantic_tune [--out sorax/assets/policy_minilm_top.safetensors]

What it does: the hidden states entering MiniLM's top `--top` layers are computed once (the
layers below stay frozen); then those layers (every tensor) and a softmax head over {benign} + the
policy's categories are trained with class-balanced cross-entropy, Adam (layer lr 5e-4, head lr
1e-3), batches of 32 prompts of similar length, 6 epochs, plus 1e-3 * ||layer - pretrained||^2.
The head starts from `semantic.fit_softmax` on the frozen embeddings (today's head); the sentence
embedding stays the mean over tokens, L2-normalised. Hyper-parameters were chosen by 5-fold
cross-validation on the training split only (benchmarks/policy_finetune_cv.py; three layers beat
one and six). The file holds, in float16, each tuned kernel as the pretrained one plus its
fine-tuning change cut to rank 64 by SVD (two factors: 2.7 MB instead of 10.7; the held-out
decisions are those of the full change within a prompt or two), the biases, norms and head in
full, the classes, and the SHA-256 of the exemplars it was trained on and of the pretrained
model.safetensors: the head is used only for exactly those exemplars and classes (otherwise the
layers keep the tuned top and re-fit the head with `fit_softmax`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sorax.models.weights import file_sha256

ASSET = pathlib.Path(__file__).resolve().parent.parent / "assets" / "policy_minilm_top.safetensors"
BUCKETS = (16, 32, 64, 128)
_DENSE = ("q", "k", "v", "o", "up", "down")
_NORMS = ("attn_norm", "out_norm")


# ------------------------------------------------------------------ the top layers, functional
def layer_params(model, i: int = -1) -> dict:
  """MiniLM layer i's weights (sorax.models.minilm.MiniLM) as {name: {tensor: float32 array}}."""
  layer = list(model.layers)[i]
  out = {n: {"kernel": jnp.asarray(getattr(layer, n).kernel[...]),
             "bias": jnp.asarray(getattr(layer, n).bias[...])} for n in _DENSE}
  out.update({n: {"scale": jnp.asarray(getattr(layer, n).scale[...]),
                  "bias": jnp.asarray(getattr(layer, n).bias[...])} for n in _NORMS})
  return out


def set_layer_params(model, p: dict, i: int = -1) -> None:
  layer = list(model.layers)[i]
  for n, tensors in p.items():
    for t, v in tensors.items():
      getattr(getattr(layer, n), t).set_value(jnp.asarray(v, jnp.float32))


def top_params(model, top: int = 1) -> list[dict]:
  """The last `top` layers' weights, lowest first (layer_params of each)."""
  return [layer_params(model, i) for i in range(-top, 0)]


def set_top_params(model, layers: Sequence[dict]) -> None:
  """Replaces the last len(layers) layers (lowest first)."""
  for j, p in enumerate(layers):
    set_layer_params(model, p, j - len(layers))


def as_layers(p) -> list[dict]:
  """One layer's params dict or a list of them (lowest first) -> a list."""
  return list(p) if isinstance(p, (list, tuple)) else [p]


def _ln(p, x, eps=1e-12):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def apply_layer(p, x, mask, heads=12):
  """The maths of sorax.models.minilm._Layer on a params dict: x [B, L, D], mask bool [B, L]."""
  b, n, d = x.shape
  dense = lambda q, y: y @ q["kernel"] + q["bias"]
  split = lambda y: y.reshape(b, n, heads, d // heads)
  q, k, v = split(dense(p["q"], x)), split(dense(p["k"], x)), split(dense(p["v"], x))
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(d // heads)
  logits = jnp.where(mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)
  attn = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v).reshape(b, n, d)
  x = _ln(p["attn_norm"], x + dense(p["o"], attn))
  return _ln(p["out_norm"], x + dense(p["down"], jax.nn.gelu(dense(p["up"], x),
                                                             approximate=False)))


def pooled(p, x, mask, a=None):
  """The tuned layers (p: one layer's params or a list, lowest first), then the mean over real
  tokens (a is None) or attention pooling with the score vector a [D] (a = 0 is the mean),
  L2-normalised: [B, D]."""
  h = x
  for q in as_layers(p):
    h = apply_layer(q, h, mask)
  wts = mask.astype(h.dtype) if a is None else jax.nn.softmax(jnp.where(mask, h @ a, -1e9), -1)
  mean = (h * wts[..., None]).sum(1) / jnp.maximum(wts.sum(1, keepdims=True), 1e-9)
  return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


_pooled = jax.jit(pooled)


# ------------------------------------------------------------------ features
def lower_states(model, tokenizer, texts: Sequence[str], max_len: int = 128,
                 top: int = 1) -> list[np.ndarray]:
  """The hidden states entering the last `top` layers, one float32 [tokens, D] array per text."""

  @jax.jit
  def lower(ids, mask):
    x = (model.word[...][ids] + model.position[...][None, :ids.shape[1]]
         + model.token_type[...][0])
    x = model.embed_norm(x)
    for layer in list(model.layers)[:-top]:
      x = layer(x, mask)
    return x

  ids, mask = tokenizer.encode(list(texts), max_len)
  lens = mask.sum(1)
  out = []
  for i in range(0, len(texts), 64):
    n = int(lens[i:i + 64].max())
    c, cm = ids[i:i + 64, :n], mask[i:i + 64, :n]
    L = next(bk for bk in BUCKETS if bk >= n)
    pi, pm = np.zeros((64, L), np.int32), np.zeros((64, L), bool)
    pi[:len(c), :n], pm[:len(c), :n] = c, cm
    pm[len(c):, 0] = True
    h = np.asarray(lower(jnp.asarray(pi), jnp.asarray(pm)))
    out += [h[j, :lens[i + j]] for j in range(len(c))]
  return out


def batches(states, idx, size, rng=None):
  """Rows idx in batches of similar length (shuffled batch order when rng is given):
  yields (row indices, x [size, L, D], mask [size, L]); padding rows have one token."""
  idx = np.asarray(idx)
  order = idx[np.argsort([len(states[i]) for i in idx], kind="stable")]
  groups = [order[i:i + size] for i in range(0, len(order), size)]
  if rng is not None:
    rng.shuffle(groups)
  for g in groups:
    L = next(bk for bk in BUCKETS if bk >= max(len(states[i]) for i in g))
    x = np.zeros((size, L, states[g[0]].shape[1]), np.float32)
    m = np.zeros((size, L), bool)
    for j, i in enumerate(g):
      x[j, :len(states[i])], m[j, :len(states[i])] = states[i], True
    m[len(g):, 0] = True
    yield g, jnp.asarray(x), jnp.asarray(m)


def embed_states(p, states, idx, a=None) -> np.ndarray:
  """Sentence embeddings [len(idx), D] of cached rows through layer params p."""
  out = np.zeros((len(idx), states[0].shape[1]), np.float32)
  pos = {int(i): k for k, i in enumerate(idx)}
  for g, x, m in batches(states, idx, 64):
    e = np.asarray(_pooled(p, x, m, a))
    for j, i in enumerate(g):
      out[pos[int(i)]] = e[j]
  return out


# ------------------------------------------------------------------ fine-tuning
@dataclasses.dataclass(frozen=True)
class FT:
  epochs: int = 6
  lr: float = 5e-4        # the layer's Adam learning rate
  head_lr: float = 1e-3
  decay: float = 1e-3     # weight of ||layer - pretrained||^2 (summed over the layer's tensors)
  batch: int = 32
  seed: int = 0
  train: str = "all"      # which of the layer's tensors train: "all" | "attn" | "ffn" | "none"
  pool: str = "mean"      # "mean" | "attn" (a learned score vector, from zeros = the mean)
  top: int = 3            # how many of MiniLM's last layers train (the rest stay frozen)
  store_rank: int = 64    # kernels stored as pretrained + a rank-r delta (0: in full)
  benign_weight: float = 3.0  # multiplies the benign class's balanced loss weight (BUILD_NOTES)


def finetune(p0, w0, b0, states, idx, y, classes: int, cfg: FT = FT(), focal: float = 0.0):
  """-> (layer params, head w [D, K], head b [K], pooling vector or None). Deterministic for a
  given cfg.seed (batch order) on the same XLA build and flags. `focal` > 0 scales each row's
  loss by (1 - p_true)^focal (Lin et al. 2017; measured worse, kept as a flag of
  benchmarks/policy_finetune_cv.py)."""
  import optax  # noqa: PLC0415

  counts = np.bincount(y, minlength=classes).astype(np.float64)
  if (counts == 0).any():
    raise ValueError(f"every class needs exemplars; counts {counts.astype(int).tolist()}")
  cw = len(y) / (classes * counts)
  cw[0] *= cfg.benign_weight  # class 0 is benign
  cw = jnp.asarray(cw, jnp.float32)
  ylab = dict(zip((int(i) for i in idx), y))
  keep = {"all": set(_DENSE + _NORMS), "attn": {"q", "k", "v", "o", "attn_norm"},
          "ffn": {"up", "down", "out_norm"}, "none": set()}[cfg.train]
  params = {"layer": p0, "w": jnp.asarray(w0), "b": jnp.asarray(b0),
            "a": jnp.zeros(as_layers(p0)[-1]["q"]["bias"].shape, jnp.float32)}
  tag = lambda p: {n: {t: "layer" if n in keep else "frozen" for t in d} for n, d in p.items()}
  labels = {"layer": [tag(p) for p in p0] if isinstance(p0, list) else tag(p0),
            "w": "head", "b": "head", "a": "head" if cfg.pool == "attn" else "frozen"}
  opt = optax.multi_transform({"layer": optax.adam(cfg.lr), "head": optax.adam(cfg.head_lr),
                               "frozen": optax.set_to_zero()}, labels)
  state = opt.init(params)

  def loss_fn(pr, x, m, yy, valid):
    e = pooled(pr["layer"], x, m, pr["a"] if cfg.pool == "attn" else None)
    logp = jax.nn.log_softmax(e @ pr["w"] + pr["b"])
    nll = -jnp.take_along_axis(logp, yy[:, None], 1)[:, 0]
    if focal:
      nll = nll * (1.0 - jnp.exp(-nll)) ** focal
    reg = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(pr["layer"]),
                                                    jax.tree.leaves(p0)))
    return (nll * cw[yy] * valid).sum() / jnp.maximum(valid.sum(), 1.0) + cfg.decay * reg

  @jax.jit
  def step(pr, st, x, m, yy, valid):
    g = jax.grad(loss_fn)(pr, x, m, yy, valid)
    upd, st = opt.update(g, st, pr)
    return optax.apply_updates(pr, upd), st

  rng = np.random.default_rng(cfg.seed)
  for _ in range(cfg.epochs):
    for g, x, m in batches(states, idx, cfg.batch, rng):
      yy, valid = np.zeros(cfg.batch, np.int32), np.zeros(cfg.batch, np.float32)
      yy[:len(g)], valid[:len(g)] = [ylab[int(i)] for i in g], 1.0
      params, state = step(params, state, x, m, jnp.asarray(yy), jnp.asarray(valid))
  return (params["layer"], np.asarray(params["w"]), np.asarray(params["b"]),
          params["a"] if cfg.pool == "attn" else None)


# ------------------------------------------------------------------ the shipped file
def exemplar_digest(classes: Sequence[str], exemplars: Sequence[tuple[str, str]]) -> str:
  return hashlib.sha256(json.dumps([list(classes), [list(e) for e in exemplars]],
                                   ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class TunedTop:
  layer: dict | list     # the tuned layers, float32: one dict, or a list (lowest first)
  w: np.ndarray          # head [D, K]
  b: np.ndarray          # [K]
  classes: tuple[str, ...]
  exemplars_sha256: str
  base_sha256: str


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
  """The safetensors format with a sorted header, so the same tensors give the same bytes
  (safetensors' own writer orders the header's metadata differently from run to run)."""
  header: dict = {"__metadata__": dict(sorted(metadata.items()))}
  offset, blobs = 0, []
  for name in sorted(tensors):
    a = np.ascontiguousarray(tensors[name])
    dtype = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}[a.dtype]
    blob = a.astype(a.dtype.newbyteorder("<")).tobytes()
    header[name] = {"dtype": dtype, "shape": list(a.shape),
                    "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
  text += b" " * (-len(text) % 8)
  with open(path, "wb") as f:
    f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def _tensor_names(layers: list[dict]) -> dict[str, np.ndarray]:
  """The tuned layers' tensors by file name: "layer.<n>.<t>" for MiniLM's last layer (the one
  name of files with one tuned layer), "layer-2.<n>.<t>" for the one below it, and so on."""
  out = {}
  for j, p in enumerate(layers):
    prefix = "layer" if j == len(layers) - 1 else f"layer-{len(layers) - j}"
    out.update({f"{prefix}.{n}.{t}": np.asarray(v) for n, d in p.items() for t, v in d.items()})
  return out


def low_rank(delta: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
  """The best rank-`rank` factors (a [in, r], b [r, out]) of a kernel's fine-tuning delta, by
  SVD: a @ b is the closest rank-r matrix to `delta` (Eckart-Young)."""
  u, s, vt = np.linalg.svd(np.asarray(delta, np.float64), full_matrices=False)
  return (u[:, :rank] * s[:rank]).astype(np.float32), vt[:rank].astype(np.float32)


def save(path, layer, w, b, classes, exemplars, base_sha256: str, cfg: FT,
         base=None) -> None:
  """Writes the tuned top. With cfg.store_rank > 0 each 2-D kernel is stored as the pretrained
  kernel (`base`: the pretrained layers' params, lowest first) plus a rank-r delta, in two
  factors "<name>.kernel.a" [in, r] and "<name>.kernel.b" [r, out]; biases and norms in full."""
  tensors = {}
  base_names = _tensor_names(as_layers(base)) if base is not None else {}
  for k, v in _tensor_names(as_layers(layer)).items():
    if cfg.store_rank and v.ndim == 2:
      if k not in base_names:
        raise ValueError(f"store_rank={cfg.store_rank} needs the pretrained {k} (base=)")
      a, bb = low_rank(v - base_names[k], cfg.store_rank)
      tensors[k + ".a"], tensors[k + ".b"] = a.astype(np.float16), bb.astype(np.float16)
    else:
      tensors[k] = v.astype(np.float16)
  tensors["head.w"], tensors["head.b"] = np.asarray(w, np.float16), np.asarray(b, np.float16)
  meta = {"classes": json.dumps(list(classes)),
          "exemplars_sha256": exemplar_digest(classes, exemplars),
          "base_sha256": base_sha256, "ft": json.dumps(dataclasses.asdict(cfg)),
          "rebuild": f"python -m sorax.safety.semantic_tune --top {cfg.top} --seed {cfg.seed}"
                     + (f" --benign-weight {cfg.benign_weight:g}" if cfg.benign_weight != 1.0
                        else "")}
  write_safetensors(path, tensors, meta)


def load(path: str | pathlib.Path = ASSET, base=None) -> TunedTop:
  """Reads a tuned top. A file with low-rank kernel deltas is resolved against the pretrained
  MiniLM: `base` (a sorax.models.minilm.MiniLM), or the default one loaded here."""
  from safetensors import safe_open  # noqa: PLC0415
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"the semantic layer's tuned encoder top {path} not found "
                            f"(rebuild: python -m sorax.safety.semantic_tune --out {path})")
  with safe_open(str(path), "np") as f:
    meta = f.metadata() or {}
    raw = {k: f.get_tensor(k).astype(np.float32) for k in f.keys()}
  by_depth: dict[int, dict] = {}  # 1: the last layer, 2: the one below it, ...
  deltas: dict[tuple[int, str, str], dict] = {}
  for k, v in raw.items():
    if k.startswith("layer"):
      prefix, n, t, *part = k.split(".")
      depth = 1 if prefix == "layer" else int(prefix.removeprefix("layer-"))
      if part:  # a low-rank delta factor: resolved below
        deltas.setdefault((depth, n, t), {})[part[0]] = v
      by_depth.setdefault(depth, {}).setdefault(n, {})[t] = None if part else v
  if (sorted(by_depth) != list(range(1, len(by_depth) + 1))
      or any(set(d) != set(_DENSE + _NORMS) for d in by_depth.values())
      or any(set(ab) != {"a", "b"} for ab in deltas.values())
      or "head.w" not in raw or "classes" not in meta):
    raise ValueError(f"{path} is not a semantic-layer encoder top (tensors {sorted(raw)})")
  if deltas:
    if base is None:
      from sorax.models.minilm import load_minilm  # noqa: PLC0415
      base, _ = load_minilm()
    pretrained = top_params(base, len(by_depth))  # lowest first
    for (depth, n, t), ab in deltas.items():
      w0 = np.asarray(pretrained[len(by_depth) - depth][n][t], np.float32)
      by_depth[depth][n][t] = w0 + ab["a"] @ ab["b"]
  layers = [by_depth[d] for d in sorted(by_depth, reverse=True)]  # lowest first
  return TunedTop(layers[0] if len(layers) == 1 else layers, raw["head.w"], raw["head.b"],
                  tuple(json.loads(meta["classes"])), meta.get("exemplars_sha256", ""),
                  meta.get("base_sha256", ""))


def build(out: str | pathlib.Path = ASSET, cfg: FT = FT(),
          prompt_set: str | pathlib.Path | None = None) -> pathlib.Path:
  """Fine-tunes on the training split of `prompt_set` (default: the package's prompt set, the
  default settings' exemplars), every blocking category, and writes `out`."""
  from sorax import config as config_lib  # noqa: PLC0415
  from sorax.models.minilm import load_minilm, model_dir  # noqa: PLC0415
  from sorax.safety import semantic  # noqa: PLC0415
  from sorax.safety.guard import SAFETY_CONFIG  # noqa: PLC0415
  from sorax.safety.policy import Policy  # noqa: PLC0415

  policy = Policy.from_config(config_lib.load_file(str(SAFETY_CONFIG)).policy.to_dict())
  categories = [c.name for c in policy.categories if c.block]  # the order build_layer uses
  classes = (semantic.BENIGN, *categories)
  exemplars = (semantic.default_exemplars(categories) if prompt_set is None else
               semantic.exemplars_of(semantic.load_prompt_set(prompt_set, "train"), categories))
  model, tok = load_minilm()
  states = lower_states(model, tok, [t for t, _ in exemplars], top=cfg.top)
  y = np.array([classes.index(label) for _, label in exemplars])
  idx = np.arange(len(exemplars))
  p0 = top_params(model, cfg.top)
  w0, b0 = semantic.fit_softmax(embed_states(p0, states, idx), y, len(classes))
  p, w, b, _ = finetune(p0, w0, b0, states, idx, y, len(classes), cfg)
  out = pathlib.Path(out)
  save(out, p, w, b, classes, exemplars, file_sha256(model_dir() / "model.safetensors"), cfg,
       base=p0)
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--out", default=str(ASSET))
  ap.add_argument("--set", default=None,
                  help="labelled prompt set whose training split it learns (default: the package's)")
  ap.add_argument("--top", type=int, default=FT.top, help="MiniLM's last layers to train")
  ap.add_argument("--seed", type=int, default=FT.seed)
  ap.add_argument("--benign-weight", type=float, default=FT.benign_weight,
                  help="multiplies the benign class's balanced loss weight")
  args = ap.parse_args(argv)
  if args.top < 1:
    ap.error(f"--top {args.top} must be at least 1")
  out = build(args.out, FT(top=args.top, seed=args.seed, benign_weight=args.benign_weight),
              args.set)
  print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "sha256": file_sha256(out)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
