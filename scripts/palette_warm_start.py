"""Turns a generator file with a linear x0 head into one with the palette head (model.palette_head)
that starts where the linear head ended, snapped to the palette (models/generator.py
palette_head_from_linear); every other weight is copied. Used to seed the shipped world model's
palette-head run from the previous shipped model (BUILD_NOTES, issue 8).

usage: python scripts/palette_warm_start.py SRC.safetensors OUT.safetensors [--tau 0.05]
"""
import argparse

import ml_collections
from flax import nnx, traverse_util

from experiments.world import WORLD_PALETTE
from sorax.models import weights
from sorax.models.generator import palette_head_from_linear, palette_latent


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("src")
  ap.add_argument("out")
  ap.add_argument("--tau", type=float, default=0.05,
                  help="softmax temperature in squared latent units (smaller: sharper snap)")
  a = ap.parse_args()
  src = weights.load_generator(a.src)
  if src.cfg.model.get("palette_head", False):
    raise SystemExit(f"{a.src} already has a palette head")
  cfg = ml_collections.ConfigDict(src.cfg.to_dict())  # an unlocked copy
  cfg.model.palette_head = True
  cfg.model.palette = [list(c) for c in WORLD_PALETTE]
  flat = traverse_util.flatten_dict(nnx.to_pure_dict(src.params))
  kernel, bias = ("dit", "final_out", "kernel"), ("dit", "final_out", "bias")
  flat[kernel], flat[bias] = palette_head_from_linear(flat[kernel], flat[bias],
                                                      palette_latent(cfg), a.tau)
  weights.save_generator(a.out, traverse_util.unflatten_dict(flat), config=cfg,
                         vocab_size=src.vocab_size, latent_stats=src.latent_stats,
                         tokenizer_sha256=src.tokenizer_sha256, step=src.step, dtype="float32")
  print(f"wrote {a.out}: palette head (K={len(WORLD_PALETTE)}, tau={a.tau}) from {a.src}")


if __name__ == "__main__":
  main()
