"""Wan2.1 DiT weights into a sorax DiT (docs/export_layout.md, "Importing Wan2.1").

The public Wan2.1 code (github.com/Wan-Video/Wan2.1, wan/modules/model.py, `WanModel`,
model_type "t2v") is the same kind of model as sorax's DiT: adaLN-zero blocks of self-attention
with 3D RoPE and QK-norm, cross-attention to text, a tanh-GELU MLP. Six things differ, and each
is either a DiT option or folded into the weights here:

- q/k/v/o projections have biases              -> DiTConfig.attn_bias = True
- QK-norm is over all heads at once ([dim])    -> DiTConfig.qk_norm_over = "width"
- the MLP width is given, not a ratio          -> DiTConfig.mlp_dim = ffn_dim
- the head's shift/scale are e + a table       -> DiTConfig.head_modulation = "bias"
- one `time_projection` for all blocks plus a per-block `modulation` [1, 6, dim] table: each
  sorax block's modulation kernel is the shared projection and its bias the shared bias plus
  the block's table (exact: silu(e) @ W + b + m).
- RoPE rotates adjacent pairs (x[2i], x[2i+1]); sorax rotates (x[i], x[i + K/2]). The q and k
  projections' output dims are permuted within each head (and their biases and norm scales with
  them): q.k is unchanged, and sorax's rotation then equals Wan's.

Wan's timestep is sigma * 1000 (flow matching x_t = (1 - sigma) x0 + sigma noise, velocity
noise - x0); sorax's DiT takes t in [0, 1] and scales by 1000 itself, so pass t = sigma. Wan pads
the text to `text_len` (512) tokens with zeros and attends to all of them: give the padded text
with an all-true text mask for the same outputs. Only "t2v" models (in_dim == out_dim, no image
cross-attention) and cross_attn_norm=True (every released t2v config) are imported.

  cfg, tensors = wan_to_sorax(state_dict, num_heads=12)   # numpy or torch tensors
  dit = load_dit(cfg, tensors)                            # an nnx DiT, scanned blocks
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Mapping

import numpy as np

from sorax.models import weights_layout as layout_lib

FREQ_DIM = 256  # sorax's timestep features (DiT.time_in); Wan's freq_dim must match


class WanImportError(ValueError):
  """A state dict that is not a Wan2.1 t2v DiT, or one sorax cannot represent."""


def _np(x) -> np.ndarray:
  if hasattr(x, "detach"):  # a torch tensor
    x = x.detach().cpu().float().numpy()
  return np.asarray(x, np.float32)


def rope_permutation(head_dim: int) -> np.ndarray:
  """perm with sorax_dim[j] = wan_dim[perm[j]]: even dims first, then odd (pairs (2i, 2i+1) ->
  (i, i + K/2))."""
  return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])


def wan_config(sd: Mapping[str, Any], num_heads: int, *, rope_theta: float = 10000.0):
  """The DiTConfig of a Wan2.1 state dict. Shapes give everything but the head count (Wan's
  config.json `num_heads`: 12 for 1.3B, 40 for 14B)."""
  from sorax.models.dit import DiTConfig  # noqa: PLC0415 (keeps the mapping importable alone)

  need = ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
          "time_projection.1.weight", "head.head.weight", "head.modulation",
          "blocks.0.ffn.0.weight", "blocks.0.self_attn.q.weight"]
  missing = [k for k in need if k not in sd]
  if missing:
    raise WanImportError(f"not a Wan2.1 DiT state dict: no {', '.join(missing[:3])}")
  if any(k.startswith("img_emb.") or ".cross_attn.k_img." in k for k in sd):
    raise WanImportError("an image-to-video Wan model (img_emb / k_img): only t2v imports")
  if "blocks.0.norm3.weight" not in sd:
    raise WanImportError("Wan model with cross_attn_norm=False: sorax's DiT always normalizes "
                         "before cross-attention")
  dim, in_dim, pt, ph, pw = sd["patch_embedding.weight"].shape
  out_dim = sd["head.head.weight"].shape[0] // (pt * ph * pw)
  if in_dim != out_dim:
    raise WanImportError(f"in_dim {in_dim} != out_dim {out_dim}: only t2v Wan models import")
  freq = sd["time_embedding.0.weight"].shape[1]
  if freq != FREQ_DIM:
    raise WanImportError(f"freq_dim {freq}: sorax's timestep features are {FREQ_DIM} wide")
  if dim % num_heads or (dim // num_heads) % 2:
    raise WanImportError(f"dim {dim} does not split into {num_heads} heads of even size")
  depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
  qk_norm = "blocks.0.self_attn.norm_q.weight" in sd
  cfg = DiTConfig(
      token_dim=pt * ph * pw * in_dim, width=dim, depth=depth, heads=num_heads,
      mlp_dim=sd["blocks.0.ffn.0.weight"].shape[0], text_width=sd["text_embedding.0.weight"].shape[1],
      qk_norm=qk_norm, rope_theta=rope_theta, attn_bias=True, qk_norm_over="width",
      head_modulation="bias")
  return cfg, (pt, ph, pw)


def wan_to_sorax(sd: Mapping[str, Any], num_heads: int):
  """A Wan2.1 t2v state dict (`WanModel.state_dict()`, numpy or torch tensors) -> (DiTConfig,
  patch, {sorax name: float32 array}) with per-layer names `dit.blocks.<i>.*` (the export
  layout, docs/export_layout.md)."""
  cfg, patch = wan_config(sd, num_heads)
  sd = {k: _np(v) for k, v in sd.items()}
  d, h = cfg.width, cfg.heads
  k = d // h
  perm = rope_permutation(k)
  out: dict[str, np.ndarray] = {}
  used: set[str] = set()

  def take(name):
    used.add(name)
    return sd[name]

  def linear(dst, src):  # torch Linear weight [out, in] -> kernel [in, out]
    out[f"{dst}.kernel"] = take(f"{src}.weight").T
    out[f"{dst}.bias"] = take(f"{src}.bias")

  w = take("patch_embedding.weight")  # [D, C, pt, ph, pw] -> [(pt, ph, pw, C), D]
  out["dit.patch_embed.kernel"] = w.transpose(2, 3, 4, 1, 0).reshape(-1, d)
  out["dit.patch_embed.bias"] = take("patch_embedding.bias")
  linear("dit.time_in", "time_embedding.0")
  linear("dit.time_out", "time_embedding.2")
  linear("dit.text_in", "text_embedding.0")
  linear("dit.text_out", "text_embedding.2")
  proj_w, proj_b = take("time_projection.1.weight").T, take("time_projection.1.bias")
  for i in range(cfg.depth):
    src, dst = f"blocks.{i}", f"dit.blocks.{i}"
    for s_att, d_att, rope in (("self_attn", "attn", True), ("cross_attn", "cross", False)):
      p = perm if rope else np.arange(k)
      for n in "qkv":
        wt = take(f"{src}.{s_att}.{n}.weight").T.reshape(d, h, k)
        b = take(f"{src}.{s_att}.{n}.bias").reshape(h, k)
        if n != "v":
          wt, b = wt[..., p], b[..., p]
        out[f"{dst}.{d_att}.w{n}"], out[f"{dst}.{d_att}.b{n}"] = wt, b
      out[f"{dst}.{d_att}.wo"] = take(f"{src}.{s_att}.o.weight").T.reshape(h, k, d)
      out[f"{dst}.{d_att}.bo"] = take(f"{src}.{s_att}.o.bias")
      if cfg.qk_norm:
        for n in "qk":
          out[f"{dst}.{d_att}.{n}_norm.scale"] = take(f"{src}.{s_att}.norm_{n}.weight").reshape(
              h, k)[..., p]
    out[f"{dst}.norm_x.scale"] = take(f"{src}.norm3.weight")
    out[f"{dst}.norm_x.bias"] = take(f"{src}.norm3.bias")
    linear(f"{dst}.mlp.up", f"{src}.ffn.0")
    linear(f"{dst}.mlp.down", f"{src}.ffn.2")
    out[f"{dst}.modulation.kernel"] = proj_w
    out[f"{dst}.modulation.bias"] = proj_b + take(f"{src}.modulation").reshape(6 * d)
  linear("dit.final_out", "head.head")
  out["dit.head_mod"] = take("head.modulation").reshape(2, d)
  unused = sorted(set(sd) - used)
  if unused:
    raise WanImportError(f"Wan state dict has {len(unused)} tensors with no place in a sorax "
                         f"DiT: {', '.join(unused[:4])}")
  return cfg, patch, {n: np.ascontiguousarray(v, np.float32) for n, v in out.items()}


def load_dit(cfg, tensors: Mapping[str, np.ndarray]):
  """An nnx DiT of `cfg` holding `tensors` (names `dit.*`, per layer or stacked). Raises
  WanImportError when names or shapes do not fit."""
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx, traverse_util  # noqa: PLC0415

  from sorax.models.dit import DiT  # noqa: PLC0415

  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: DiT(cfg, rngs=nnx.Rngs(0))))
  want = {"dit." + ".".join(map(str, p)): v.shape for p, v in
          traverse_util.flatten_dict(nnx.to_pure_dict(abstract)).items()}
  got = dict(tensors)
  if any(layout_lib.is_stacked(n) for n in want):
    got = layout_lib.stack(layout_lib.unstack(got), cfg.depth)
  missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
  if missing or extra:
    raise WanImportError(f"tensors do not fit the DiT: missing {missing[:4]}, unexpected "
                         f"{extra[:4]}")
  for n, shape in want.items():
    if tuple(got[n].shape) != tuple(shape):
      raise WanImportError(f"{n} has shape {tuple(got[n].shape)}, the DiT wants {tuple(shape)}")
  pure = traverse_util.unflatten_dict({
      tuple(int(q) if q.isdigit() else q for q in n[len("dit."):].split(".")):
      jnp.asarray(v, jnp.dtype(cfg.param_dtype)) for n, v in got.items()})
  nnx.replace_by_pure_dict(abstract, pure)
  return nnx.merge(graphdef, abstract)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A Wan2.1 checkpoint file: safetensors (diffusion_pytorch_model.safetensors) or a torch
  .pth/.pt state dict (needs the torch extra)."""
  p = pathlib.Path(path)
  if not p.is_file():
    raise WanImportError(f"Wan checkpoint {p} not found")
  if p.suffix == ".safetensors":
    from safetensors.numpy import load_file  # noqa: PLC0415
    try:
      return load_file(str(p))
    except Exception as e:  # safetensors raises SafetensorError and OSError
      raise WanImportError(f"Wan checkpoint {p} is not a readable safetensors file: {e}") from e
  import torch  # noqa: PLC0415
  sd = torch.load(str(p), map_location="cpu", weights_only=True)
  return {k: _np(v) for k, v in sd.items()}


def save_dit(path: str | os.PathLike, cfg, patch, tensors: Mapping[str, np.ndarray], *,
             source: str = "") -> pathlib.Path:
  """Writes an imported DiT (per-layer names, float32) with its DiTConfig and patch in the
  metadata (format "sorax.dit/1"), atomically."""
  import dataclasses  # noqa: PLC0415

  from safetensors.numpy import save_file  # noqa: PLC0415
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
  meta = {"format": "sorax.dit/1", "dit_config": json.dumps(dataclasses.asdict(cfg)),
          "patch": json.dumps(list(patch)), "source": source}
  try:
    save_file(dict(tensors), str(tmp), metadata=meta)
    os.replace(tmp, out)
  finally:
    tmp.unlink(missing_ok=True)
  return out


def read_dit(path: str | os.PathLike):
  """A file written by `save_dit` -> (DiTConfig, patch, tensors)."""
  from safetensors import safe_open  # noqa: PLC0415

  from sorax.models.dit import DiTConfig  # noqa: PLC0415
  p = pathlib.Path(path)
  if not p.is_file():
    raise WanImportError(f"DiT file {p} not found")
  with safe_open(str(p), "numpy") as f:
    meta = f.metadata() or {}
    if meta.get("format") != "sorax.dit/1":
      raise WanImportError(f"{p} is not an imported DiT file (format {meta.get('format')!r})")
    tensors = {k: f.get_tensor(k) for k in f.keys()}
  # JSON keeps tuples as lists; DiTConfig's tuple fields (palette, slot_classes) want tuples back.
  fields = {k: _tuples(v) for k, v in json.loads(meta["dit_config"]).items()}
  return DiTConfig(**fields), tuple(json.loads(meta["patch"])), tensors


def _tuples(v):
  return tuple(_tuples(x) for x in v) if isinstance(v, list) else v
