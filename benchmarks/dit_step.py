"""The same DiT train step in sorax (JAX) and in PyTorch, side by side in one command.

  python benchmarks/dit_step.py --size cpu          # minutes on the CPU box
  python benchmarks/dit_step.py --size 1.3b         # width 1536, 30 layers, 32k video tokens (GPU)

Both sides build the DiT of sorax/models/dit.py (the PyTorch one is sorax/export/torch_ref.py,
op for op the same model) with random weights, and time forward + backward + AdamW on the same
shapes after warm-up. FLOPs per step come from XLA's cost analysis of the JAX step (the same
math for both); the ceiling is the best dense matmul rate measured here in either framework.
Prints one JSON line: step time, achieved FLOP/s and MFU per framework, and the ratio
torch_step_time / jax_step_time (> 1: sorax is faster). Needs the `bench` (or `torch`) extra.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sorax.models.dit import DiT, DiTConfig

SIZES = {
    # Near the world32 model: 4 blocks of 128, 5x8x8 tokens of 64 dims, batch 8.
    "cpu": dict(width=128, depth=4, heads=4, mlp=512, tokens=320, text=32, text_width=128,
                token_dim=64, batch=8, dtype="float32"),
    # The 1.3B-size config of the issue (Wan2.1-1.3B's shape): 32k video + 512 text tokens.
    "1.3b": dict(width=1536, depth=30, heads=12, mlp=8960, tokens=32760, text=512,
                 text_width=4096, token_dim=64, batch=1, dtype="bfloat16"),
}


def inputs(s, seed=0):
  rng = np.random.default_rng(seed)
  b, n = s["batch"], s["tokens"]
  side = int(math.isqrt(n // 5)) or 1
  grid = np.stack(np.meshgrid(np.arange(5), np.arange(side), np.arange(n // (5 * side) + 1),
                              indexing="ij"), -1).reshape(-1, 3)[:n]
  return dict(x=rng.standard_normal((b, n, s["token_dim"]), np.float32),
              pos=np.broadcast_to(grid, (b, n, 3)).astype(np.int32),
              t=rng.uniform(size=(b,)).astype(np.float32),
              text=rng.standard_normal((b, s["text"], s["text_width"]), np.float32),
              mask=np.ones((b, s["text"]), bool),
              target=rng.standard_normal((b, n, s["token_dim"]), np.float32))


def _time(fn, steps: int, warmup: int = 2) -> float:
  for _ in range(warmup):
    fn()
  t0 = time.perf_counter()
  for _ in range(steps):
    fn()
  return (time.perf_counter() - t0) / steps


def jax_side(s, data, steps):
  cfg = DiTConfig(token_dim=s["token_dim"], width=s["width"], depth=s["depth"], heads=s["heads"],
                  mlp_dim=s["mlp"], text_width=s["text_width"], dtype=s["dtype"],
                  remat="dots" if s["dtype"] == "bfloat16" else "none")
  model = DiT(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  params = jax.tree.map(lambda p: p + 0.02 * jax.random.normal(jax.random.PRNGKey(1), p.shape,
                                                               p.dtype), params)
  tx = optax.adamw(1e-4)
  opt = tx.init(params)
  d = {k: jnp.asarray(v) for k, v in data.items()}

  def loss_fn(p):
    out = nnx.merge(graphdef, p)(d["x"], d["pos"], d["t"], d["text"], d["mask"])
    return jnp.mean((out - d["target"]) ** 2)

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(loss_fn)(p)
    upd, o = tx.update(g, o, p)
    return optax.apply_updates(p, upd), o, loss

  compiled = step.lower(params, opt).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0))
  state = {"p": params, "o": opt}

  def run():
    state["p"], state["o"], loss = compiled(state["p"], state["o"])
    jax.block_until_ready(loss)

  return _time(run, steps), flops


def torch_side(s, data, steps, compile_mode: str):
  import torch  # noqa: PLC0415

  from sorax.export import torch_ref  # noqa: PLC0415
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  ratio = (s["mlp"] + 0.5) / s["width"]  # torch_ref takes a ratio; int(width * ratio) == mlp
  model = torch_ref.DiT(s["token_dim"], s["width"], s["depth"], s["heads"], ratio,
                        s["text_width"]).to(dev)
  with torch.no_grad():
    for p in model.parameters():
      p.normal_(0, 0.02)
  use_compile = compile_mode == "on" or (compile_mode == "auto" and dev == "cuda")
  fwd = torch.compile(model) if use_compile else model
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  d = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev) for k, v in data.items()}
  amp = torch.autocast(dev, dtype=torch.bfloat16, enabled=s["dtype"] == "bfloat16")

  def run():
    opt.zero_grad(set_to_none=True)
    with amp:
      out = fwd(d["x"], d["pos"], d["t"], d["text"], d["mask"])
    loss = torch.mean((out.float() - d["target"]) ** 2)
    loss.backward()
    opt.step()
    if dev == "cuda":
      torch.cuda.synchronize()

  return _time(run, steps), use_compile, dev


def matmul_ceiling(n: int, dtype: str) -> dict[str, float]:
  """Best dense matmul FLOP/s in each framework (n x n by n x n, 2 n^3 FLOPs)."""
  import torch  # noqa: PLC0415
  a = jnp.ones((n, n), dtype)
  mm = jax.jit(lambda x: x @ x)
  t_jax = _time(lambda: jax.block_until_ready(mm(a)), 10)
  dev = "cuda" if torch.cuda.is_available() else "cpu"
  ta = torch.ones((n, n), dtype=getattr(torch, dtype), device=dev)

  def tmm():
    ta @ ta
    if dev == "cuda":
      torch.cuda.synchronize()
  t_torch = _time(tmm, 10)
  return {"jax": 2 * n**3 / t_jax, "torch": 2 * n**3 / t_torch}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--size", choices=sorted(SIZES), default="cpu")
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--torch-compile", choices=["auto", "on", "off"], default="auto",
                  help="auto: torch.compile on a GPU, eager on the CPU")
  args = ap.parse_args(argv)
  s = SIZES[args.size]
  data = inputs(s)
  jax_t, flops = jax_side(s, data, args.steps)
  torch_t, compiled, dev = torch_side(s, data, args.steps, args.torch_compile)
  ceil = matmul_ceiling(1024 if args.size == "cpu" else 8192, s["dtype"])
  best = max(ceil.values())
  print(json.dumps({
      "bench": "dit_step", "size": args.size, "backend": jax.default_backend(), "torch_device": dev,
      "torch_compile": compiled, "dtype": s["dtype"], "batch": s["batch"], "tokens": s["tokens"],
      "flops_per_step": flops, "jax_step_s": round(jax_t, 5), "torch_step_s": round(torch_t, 5),
      "jax_flops_per_s": flops / jax_t, "torch_flops_per_s": flops / torch_t,
      "matmul_ceiling_flops_per_s": best, "jax_mfu": round(flops / jax_t / best, 4),
      "torch_mfu": round(flops / torch_t / best, 4),
      "ratio_torch_over_jax": round(torch_t / jax_t, 3)}))


if __name__ == "__main__":
  main()
