"""`sorax plan`'s predicted per-device peak against the measured peak of real train steps on
simulated CPU devices. One JSON line per case: predicted and measured GiB per device, ratio.

    python benchmarks/plan_check.py [--devices 4] [--width 384 --depth 8] [--cases ...]

Each case runs in its own process with N simulated CPU devices (all in one address space, so a
device's share of the measured peak is the process's peak RSS growth / N). The train step and
the state init are compiled first (compilation's own memory is not the step's), then the peak
resident set (VmHWM) is reset (/proc/self/clear_refs) and the state, a batch and two train
steps are run: measured = (VmHWM - VmRSS before the state) / N. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = ("data4:none", "fsdp4:none", "fsdp4:dots", "fsdp4:full", "data2xfsdp2:none",
         "fsdp2xtensor2:none")


def _mesh(spec: str) -> dict[str, int]:
  out = {"data": 1, "fsdp": 1, "tensor": 1}
  for part in spec.split("x"):
    name = part.rstrip("0123456789")
    out[name] = int(part[len(name):])
  return out


def _rss_kib(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"no {field} in /proc/self/status")


def child(args) -> None:
  import gc  # noqa: PLC0415

  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  from sorax import config as config_lib  # noqa: PLC0415
  from sorax.train import plan as plan_lib  # noqa: PLC0415
  from sorax.train import state as state_lib  # noqa: PLC0415
  from sorax.models.generator import Generator, generator_config  # noqa: PLC0415
  from sorax.parallel import mesh as mesh_lib  # noqa: PLC0415
  from sorax.train.trainer import tokenizer_for  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415
  import ml_collections  # noqa: PLC0415

  mesh_spec, remat = args.case.split(":")
  mesh = _mesh(mesh_spec)
  cfg = config_lib.load_config(args.config, args.overrides)
  cfg = plan_lib.with_video(cfg, batch=args.batch)
  predicted = plan_lib.compile_plan(cfg, mesh, remat, jax.devices())
  # The same step, compiled again for running (compile_plan's executable is not kept).
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.mesh.shape = ml_collections.ConfigDict({**{a: 1 for a in mesh_lib.MESH_AXES}, **mesh})
  cfg.model.remat = remat
  n = int(np.prod(list(mesh.values())))
  jitted, state_sds, batch_sds, mesh_obj, rules = plan_lib._train_step_and_inputs(
      cfg, jax.devices()[:n])
  gcfg = generator_config(cfg, tokenizer_for(cfg).vocab_size)
  tx = state_lib.make_optimizer(cfg)
  with mesh_lib.activate(mesh_obj, rules):
    step = jitted.lower(state_sds, batch_sds).compile()
    _, init, _ = state_lib._sharded_init(lambda: Generator(gcfg, rngs=nnx.Rngs(cfg.seed)),
                                         cfg.seed, mesh_obj, rules, tx)
    with jax.set_mesh(mesh_obj):
      init_c = init.lower().compile()
  rng = np.random.default_rng(0)
  host = {k: (rng.integers(0, 255, s.shape).astype(s.dtype) if s.dtype != bool
              else np.ones(s.shape, bool)) for k, s in batch_sds.items()}
  host["ids"] = host["ids"] % 100
  gc.collect()
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
  base = _rss_kib("VmRSS")
  with mesh_lib.activate(mesh_obj, rules):
    state = init_c()
    batch = {k: jax.device_put(v, batch_sds[k].sharding) for k, v in host.items()}
    for _ in range(2):
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
  peak = _rss_kib("VmHWM")
  measured = (peak - base) * 1024 / n
  print(json.dumps({
      "bench": "plan_check", "case": args.case, "devices": n,
      "params_m": round(plan_lib.parameter_count(cfg) / 1e6, 2),
      "predicted_gib": round(predicted.peak_bytes / plan_lib.GIB, 4),
      "measured_gib": round(measured / plan_lib.GIB, 4),
      "ratio": round(measured / predicted.peak_bytes, 3) if predicted.ok else None,
      "state_gib": round(predicted.argument_bytes / plan_lib.GIB, 4),
      "temp_gib": round(predicted.temp_bytes / plan_lib.GIB, 4)}), flush=True)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--config", default="experiments/world.py:world32")
  ap.add_argument("--devices", type=int, default=4)
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--width", type=int, default=384)
  ap.add_argument("--depth", type=int, default=8)
  ap.add_argument("--cases", nargs="*", default=list(CASES))
  ap.add_argument("--case", help=argparse.SUPPRESS)  # the child's one case
  args, overrides = ap.parse_known_args()
  args.overrides = overrides
  if args.case:
    child(args)
    return
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={args.devices}")
  model = [f"--config.model.width={args.width}", f"--config.model.depth={args.depth}",
           f"--config.model.heads={max(4, args.width // 64)}"]
  for case in args.cases:
    cmd = [sys.executable, __file__, "--case", case, "--config", args.config,
           "--batch", str(args.batch), *model, *overrides]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode or not lines:
      print(json.dumps({"bench": "plan_check", "case": case, "error": r.stderr[-400:]}))
    else:
      print(lines[-1], flush=True)


if __name__ == "__main__":
  main()
