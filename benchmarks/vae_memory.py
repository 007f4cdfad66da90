"""Peak memory and throughput of VAE encode + decode for 2 s, 8 s, 30 s and 60 s videos.

Chunked (constant memory: frames streamed in, latents out, decoded frames streamed out) against
the whole-video call, each length in its own process so peaks do not mix. Prints one JSON line.

    python benchmarks/vae_memory.py [--vae PATH] [--height 64 --width 64 --fps 8]
        [--seconds 2 8 30 60] [--whole-up-to 30]

Memory: the process's peak RSS (host; on CPU that is where activations live) and, on GPU/TPU,
the device's peak_bytes_in_use. "flat" is max/min of the chunked peaks over the lengths.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _frames(n: int, height: int, width: int, piece: int, seed: int = 0):
  """A video streamed in pieces of `piece` frames: moving bars plus noise (never whole)."""
  import numpy as np
  rng = np.random.default_rng(seed)
  xx = np.mgrid[0:height, 0:width][1]
  for start in range(0, n, piece):
    t = np.arange(start, min(n, start + piece))[:, None, None]
    bars = ((xx[None] + 2 * t) // 8 % 2) * 1.2 - 0.6
    v = np.stack([bars, np.roll(bars, 3, axis=2), -bars], -1)
    v = v + 0.1 * rng.standard_normal(v.shape)
    yield np.clip(v, -1, 1)[None].astype(np.float32)


def run_one(args) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx

  from sorax.models import vae as V
  from sorax.models.vae_codec import load_vae

  codec = load_vae(args.vae)
  model = nnx.merge(codec.graphdef, codec.params)
  r = codec.cfg.temporal
  n = V.video_frames(V.latent_frames(int(args.one * args.fps), r), r)
  base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  t0 = time.perf_counter()
  checksum = 0.0
  if args.mode == "chunked":
    latents = [np.asarray(z) for z in V.encode_chunked(model, _frames(n, args.height, args.width,
                                                                      r * args.chunk),
                                                       chunk=r * args.chunk)]
    t_enc = time.perf_counter() - t0
    for x in V.decode_chunked(model, latents, chunk=args.chunk):
      checksum += float(jnp.sum(x))  # consume and drop each decoded piece
  else:
    video = jnp.concatenate([jnp.asarray(p) for p in _frames(n, args.height, args.width, n)], 1)
    z = jax.jit(model.encode)(video)
    jax.block_until_ready(z)
    t_enc = time.perf_counter() - t0
    checksum = float(jnp.sum(jax.jit(lambda z: model.decode(z)[0])(z)))
  total = time.perf_counter() - t0
  stats = jax.devices()[0].memory_stats() or {}
  return {"seconds": args.one, "frames": n, "mode": args.mode,
          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
          "rss_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss)
                                 / 1024, 1),
          "device_peak_mb": (round(stats["peak_bytes_in_use"] / 2**20, 1)
                             if "peak_bytes_in_use" in stats else None),
          "encode_s": round(t_enc, 2), "total_s": round(total, 2),
          "frames_per_s": round(n / total, 1), "checksum_finite": bool(np.isfinite(checksum))}


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--vae", default="", help="VAE file or workdir (default: the shipped world VAE)")
  p.add_argument("--height", type=int, default=64)
  p.add_argument("--width", type=int, default=64)
  p.add_argument("--fps", type=float, default=8.0)
  p.add_argument("--seconds", type=float, nargs="+", default=[2, 8, 30, 60])
  p.add_argument("--chunk", type=int, default=4, help="latent frames per chunk")
  p.add_argument("--whole-up-to", type=float, default=60,
                 help="also run the whole-video call for lengths up to this many seconds")
  p.add_argument("--one", type=float, help=argparse.SUPPRESS)
  p.add_argument("--mode", help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.one is not None:
    print(json.dumps(run_one(args)))
    return
  results = []
  for mode in ("chunked", "whole"):
    for s in args.seconds:
      if mode == "whole" and s > args.whole_up_to:
        continue
      cmd = [sys.executable, __file__, "--vae", args.vae, "--height", str(args.height),
             "--width", str(args.width), "--fps", str(args.fps), "--chunk", str(args.chunk),
             "--one", str(s), "--mode", mode]
      out = subprocess.run(cmd, capture_output=True, text=True)
      if out.returncode:
        results.append({"seconds": s, "mode": mode, "error": out.stderr.strip()[-300:]})
      else:
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
  import jax
  chunked = [r for r in results if r["mode"] == "chunked" and "peak_rss_mb" in r]
  key = "device_peak_mb" if chunked and chunked[0]["device_peak_mb"] else "peak_rss_mb"
  peaks = [r[key] for r in chunked]
  print(json.dumps({"benchmark": "vae_memory", "device": str(jax.devices()[0].device_kind),
                    "size": [args.height, args.width], "fps": args.fps, "memory_key": key,
                    "flat": round(max(peaks) / min(peaks), 3) if peaks else None,
                    "results": results}))


if __name__ == "__main__":
  main()
