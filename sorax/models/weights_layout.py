"""Tensor names in generator weights files, and the two layouts (docs/export_layout.md).

- `stacked` (format "sorax.generator/1"): tensors as the model holds them. A scanned DiT
  (`model.scan_layers`, the default) keeps its blocks on a leading `layers` axis, so the file has
  `dit.blocks.attn.wq` [depth, D, H, K]. The shipped checkpoint is in this layout.
- `per_layer` (format "sorax.generator/2"): what `sorax export` writes. Every DiT block has its
  own tensors, `dit.blocks.<i>.attn.wq` [D, H, K], i = 0..depth-1: the names a non-scanned DiT
  has, and what other frameworks expect.

numpy only (no JAX): the PyTorch reference (sorax/export/torch_ref.py) reads files with this.
"""

from __future__ import annotations

import numpy as np

FORMAT_STACKED = "sorax.generator/1"
FORMAT_PER_LAYER = "sorax.generator/2"
LAYOUTS = {"stacked": FORMAT_STACKED, "per_layer": FORMAT_PER_LAYER}
FORMATS = {v: k for k, v in LAYOUTS.items()}
BLOCKS = "dit.blocks."  # the only scanned (stacked) module


def is_stacked(name: str) -> bool:
  """`dit.blocks.attn.wq` (stacked) as opposed to `dit.blocks.3.attn.wq` (one layer)."""
  return name.startswith(BLOCKS) and not name[len(BLOCKS):].split(".", 1)[0].isdigit()


def unstack(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Stacked DiT block tensors [depth, ...] -> one tensor per layer (`dit.blocks.<i>.<rest>`);
  every other tensor as it is. Idempotent."""
  out = {}
  for name, v in tensors.items():
    if is_stacked(name):
      rest = name[len(BLOCKS):]
      for i in range(v.shape[0]):
        out[f"{BLOCKS}{i}.{rest}"] = v[i]
    else:
      out[name] = v
  return out


def stack(tensors: dict[str, np.ndarray], depth: int) -> dict[str, np.ndarray]:
  """The inverse of `unstack` for a DiT of `depth` blocks (a scanned model's layout)."""
  groups: dict[str, dict[int, np.ndarray]] = {}
  out = {}
  for name, v in tensors.items():
    head = name[len(BLOCKS):].split(".", 1) if name.startswith(BLOCKS) else []
    if len(head) == 2 and head[0].isdigit():
      groups.setdefault(head[1], {})[int(head[0])] = v
    else:
      out[name] = v
  for rest, per in groups.items():
    if sorted(per) != list(range(depth)):
      raise ValueError(f"{BLOCKS}<i>.{rest}: layers {sorted(per)}, expected 0..{depth - 1}")
    out[BLOCKS + rest] = np.stack([per[i] for i in range(depth)])
  return out


def depth_of(names) -> int:
  """Number of DiT blocks named per layer in `names` (0 if none)."""
  idx = [int(n[len(BLOCKS):].split(".", 1)[0]) for n in names
         if n.startswith(BLOCKS) and not is_stacked(n)]
  return max(idx) + 1 if idx else 0
