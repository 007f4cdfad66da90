"""`sorax import-wan`: public Wan2.1 DiT weights into a sorax DiT file (sorax/export/wan.py)."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
  p = sub.add_parser("import-wan", help="convert a Wan2.1 t2v DiT checkpoint (safetensors or "
                     ".pth) into a sorax DiT weights file (docs/export_layout.md)")
  p.add_argument("checkpoint", help="Wan2.1 diffusion_pytorch_model.safetensors or a .pth")
  p.add_argument("--num-heads", type=int, required=True,
                 help="the model's attention heads (Wan config.json num_heads: 1.3B 12, 14B 40)")
  p.add_argument("--out", required=True, help="the sorax DiT file to write (.safetensors)")


def cmd_import_wan(args) -> int:
  from sorax.export import wan  # noqa: PLC0415
  sd = wan.read_state_dict(args.checkpoint)
  cfg, patch, tensors = wan.wan_to_sorax(sd, args.num_heads)
  out = wan.save_dit(args.out, cfg, patch, tensors, source=str(args.checkpoint))
  n = sum(v.size for v in tensors.values())
  print(json.dumps({"out": str(out), "tensors": len(tensors), "parameters": int(n),
                    "width": cfg.width, "depth": cfg.depth, "heads": cfg.heads,
                    "patch": list(patch)}))
  return 0
