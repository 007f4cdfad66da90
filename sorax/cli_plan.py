"""`sorax plan`: per-device peak memory of a config's train step for candidate meshes and remat
policies, and the cheapest plan that fits (sorax/train/plan.py). Nothing is allocated."""

from __future__ import annotations

import json
import os
import sys


def add_parsers(sub) -> None:
  p = sub.add_parser("plan", help="per-device peak memory of the train step for every mesh and "
                     "remat policy, and the cheapest that fits (compiled, nothing allocated)")
  p.add_argument("--config", required=True, help="experiments/FILE.py:variant")
  p.add_argument("--devices", type=int, required=True, help="devices to plan for")
  p.add_argument("--memory-gb", type=float, required=True,
                 help="memory per device, GiB (H100/H200: 80/141, TPU v5e: 16, v5p: 95)")
  p.add_argument("--frames", type=int, help="clip length (default: the config's data.frames)")
  p.add_argument("--height", type=int, help="clip height (default: data.height)")
  p.add_argument("--width", type=int, help="clip width (default: data.width)")
  p.add_argument("--batch", type=int, help="global batch (default: data.batch_size)")
  p.add_argument("--remat", default="none,dots,full",
                 help="comma-separated remat policies to try (default: all)")
  p.add_argument("--json", action="store_true", help="one JSON line per plan, then the choice")


def _has_accelerator_plugin() -> bool:
  import importlib.util  # noqa: PLC0415
  for name in ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin", "jax_plugins.xla_cuda12",
               "jax_plugins.xla_cuda13"):
    try:
      if importlib.util.find_spec(name) is not None:
        return True
    except ModuleNotFoundError:
      pass
  return False


def simulate_devices(n: int) -> bool:
  """Compiling for n devices needs n local devices: with no accelerator (or JAX_PLATFORMS=cpu),
  ask XLA for n CPU devices. Only possible before JAX starts its backend, so this runs first.
  -> whether the devices are simulated."""
  import jax  # noqa: PLC0415
  from jax._src import xla_bridge  # noqa: PLC0415
  if xla_bridge.backends_are_initialized():
    return False
  if _has_accelerator_plugin() and os.environ.get("JAX_PLATFORMS", "") != "cpu":
    return False
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
  jax.config.update("jax_platforms", "cpu")
  return True


def cmd_plan(args, overrides) -> int:
  if args.devices < 1:
    raise ValueError(f"--devices must be >= 1, got {args.devices}")
  if args.memory_gb <= 0:
    raise ValueError(f"--memory-gb must be > 0, got {args.memory_gb}")
  simulated = simulate_devices(args.devices)
  from sorax import config as config_lib  # noqa: PLC0415
  from sorax.models.dit import REMAT_POLICIES  # noqa: PLC0415
  from sorax.train import plan as plan_lib  # noqa: PLC0415
  remats = [r.strip() for r in args.remat.split(",") if r.strip()]
  bad = [r for r in remats if r not in REMAT_POLICIES]
  if bad or not remats:
    raise ValueError(f"--remat {args.remat!r}: choose from {list(REMAT_POLICIES)}")
  cfg = plan_lib.with_video(config_lib.load_config(args.config, overrides), frames=args.frames,
                            height=args.height, width=args.width, batch=args.batch)
  d = cfg.data
  budget = args.memory_gb * plan_lib.GIB
  print(f"sorax plan: {args.config}, {plan_lib.parameter_count(cfg) / 1e6:.1f}M parameters, "
        f"clips {d.frames}x{d.height}x{d.width}, global batch {d.batch_size}, "
        f"{args.devices} devices x {args.memory_gb:g} GiB"
        f"{' (compiled for simulated CPU devices)' if simulated else ''}", file=sys.stderr)

  def progress(p):
    r = p.row()
    what = f"{r['peak_gib']:.3f} GiB" if p.ok else "does not compile"
    print(f"  {r['mesh']} remat={r['remat']}: {what}", file=sys.stderr, flush=True)

  plans = plan_lib.plan(cfg, args.devices, remats=remats, progress=progress)
  best = plan_lib.cheapest_fit(plans, budget)
  if args.json:
    for p in plans:
      print(json.dumps(p.row()))
  else:
    print(plan_lib.format_table(plans, budget))
  if best is None:
    print(json.dumps({"fits": False, "devices": args.devices, "memory_gb": args.memory_gb,
                      "smallest_peak_gib": min((p.row()["peak_gib"] for p in plans if p.ok),
                                               default=None)}))
    return 1
  m = best.mesh
  print(json.dumps({"fits": True, **best.row(),
                    "overrides": [f"--config.mesh.shape.{a}={m[a]}" for a in plan_lib.MESH_PREFERENCE]
                    + ["--config.mesh.shape.sequence=1", f"--config.model.remat={best.remat}"]}))
  return 0
