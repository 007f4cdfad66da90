"""Memory planner: per-device peak memory of the train step for candidate meshes and remat
policies, from XLA's own buffer assignment, with nothing allocated.

For each candidate the jitted, sharded train step (exactly what `sorax train` runs: the same
state shardings, batch shardings and donation) is lowered on abstract inputs
(jax.ShapeDtypeStruct) and compiled; `compiled.memory_analysis()` gives the bytes one device
holds: arguments (its shards of the train state and the batch), outputs, temporaries, minus
what the donated state aliases. Nothing is allocated, so a 1.3B-parameter config plans on a
laptop; the devices it compiles for are the local ones (simulated CPU devices when there is no
accelerator: `sorax plan` sets that up).

The cheapest plan that fits is the one with the least recompute (remat "none" < "dots" <
"full"), then the least communication: data parallelism over FSDP over tensor parallelism.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from sorax.models.dit import REMAT_POLICIES
from sorax.models.generator import Generator, generator_config
from sorax.parallel import mesh as mesh_lib
from sorax.train import state as state_lib

GIB = 1024 ** 3
MESH_PREFERENCE = ("data", "fsdp", "tensor")  # cheapest communication first


@dataclasses.dataclass(frozen=True)
class Plan:
  mesh: dict[str, int]
  remat: str
  ok: bool                  # it compiled; else `error` says why
  peak_bytes: int = 0       # per device: arguments + outputs + temporaries - aliased
  argument_bytes: int = 0
  output_bytes: int = 0
  temp_bytes: int = 0
  alias_bytes: int = 0
  flops: float = 0.0        # per device, XLA's cost analysis (remat's recompute included)
  error: str = ""

  def fits(self, memory_bytes: float) -> bool:
    return self.ok and self.peak_bytes <= memory_bytes

  def cost(self) -> tuple:
    """Recompute first (the remat policy: XLA's FLOP counts also include collectives, so they
    rank meshes badly), then communication: tensor over FSDP over data parallelism."""
    return (list(REMAT_POLICIES).index(self.remat),
            *(self.mesh.get(a, 1) for a in reversed(MESH_PREFERENCE)))

  def row(self) -> dict[str, Any]:
    out = {"mesh": "x".join(f"{a}{self.mesh[a]}" for a in MESH_PREFERENCE), "remat": self.remat}
    if not self.ok:
      return {**out, "error": self.error}
    return {**out, "peak_gib": round(self.peak_bytes / GIB, 4),
            "params_opt_gib": round(self.argument_bytes / GIB, 4),
            "temp_gib": round(self.temp_bytes / GIB, 4), "gflops": round(self.flops / 1e9, 2)}


def with_video(cfg: ml_collections.ConfigDict, *, frames: int | None = None,
               height: int | None = None, width: int | None = None,
               batch: int | None = None) -> ml_collections.ConfigDict:
  """A copy of `cfg` training on clips of this size and global batch."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  for key, v in (("frames", frames), ("height", height), ("width", width), ("batch_size", batch)):
    if v is not None:
      if int(v) < 1:
        raise ValueError(f"{key} must be >= 1, got {v}")
      cfg.data[key] = int(v)
  return cfg


def candidate_meshes(devices: int, batch: int, heads: int) -> list[dict[str, int]]:
  """Every data x fsdp x tensor = `devices` whose data-parallel part divides the batch and
  whose tensor part divides the heads."""
  if devices < 1:
    raise ValueError(f"devices must be >= 1, got {devices}")
  out = []
  for d, f in itertools.product(range(1, devices + 1), repeat=2):
    if devices % (d * f):
      continue
    t = devices // (d * f)
    if batch % (d * f) == 0 and heads % t == 0:
      out.append({"data": d, "fsdp": f, "tensor": t})
  return out


def _train_step_and_inputs(cfg: ml_collections.ConfigDict, devices: Sequence[jax.Device]):
  """(jitted step, abstract state, abstract batch, mesh, rules) as sorax train builds them."""
  from sorax.train.step import make_train_step  # noqa: PLC0415
  from sorax.train.trainer import step_config, tokenizer_for  # noqa: PLC0415
  tokenizer = tokenizer_for(cfg)
  codec = state_lib.make_codec_from(cfg)
  if hasattr(codec, "with_stats"):  # latent statistics change no shape
    ch = codec.channels
    codec = codec.with_stats([0.0] * ch, [1.0] * ch)
  mesh = mesh_lib.make_mesh(cfg.mesh.shape, devices, cfg.mesh.get("dcn_shape"))
  rules = mesh_lib.rules_from_config(cfg.mesh.rules)
  tx = state_lib.make_optimizer(cfg)
  gcfg = generator_config(cfg, tokenizer.vocab_size)
  with mesh_lib.activate(mesh, rules):
    graphdef, abstract, shardings = state_lib.abstract_train_state(
        lambda: Generator(gcfg, rngs=nnx.Rngs(cfg.seed)), cfg.seed, mesh, rules, tx)
  d = cfg.data
  shapes = {"video": ((d.batch_size, d.frames, d.height, d.width, 3), jnp.uint8),
            "ids": ((d.batch_size, d.text_len), jnp.int32),
            "mask": ((d.batch_size, d.text_len), jnp.bool_)}
  batch_sh = {k: mesh_lib.batch_sharding(mesh, rules, len(s)) for k, (s, _) in shapes.items()}
  batch = {k: jax.ShapeDtypeStruct(s, dt, sharding=batch_sh[k]) for k, (s, dt) in shapes.items()}
  step = make_train_step(graphdef, tx, codec.encode, step_config(cfg, tokenizer.null_tokens),
                         normalize=codec.normalize, fold=getattr(codec, "fold", None))
  jitted = jax.jit(step, in_shardings=(shardings, batch_sh),
                   out_shardings=(shardings, mesh_lib.replicated(mesh)), donate_argnums=0)
  return jitted, abstract, batch, mesh, rules


def compile_plan(cfg: ml_collections.ConfigDict, mesh: dict[str, int], remat: str,
                 devices: Sequence[jax.Device]) -> Plan:
  """Compiles cfg's train step for one mesh and remat policy -> its per-device memory."""
  if remat not in REMAT_POLICIES:
    raise ValueError(f"unknown remat policy {remat!r}; choose from {list(REMAT_POLICIES)}")
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.mesh.shape = ml_collections.ConfigDict({**{a: 1 for a in mesh_lib.MESH_AXES}, **mesh})
  cfg.model.remat = remat
  n = math.prod(mesh.values())
  try:
    jitted, state, batch, mesh_obj, rules = _train_step_and_inputs(cfg, list(devices)[:n])
    with mesh_lib.activate(mesh_obj, rules):
      compiled = jitted.lower(state, batch).compile()
  except Exception as e:  # noqa: BLE001 - a candidate that cannot compile is reported, not fatal
    return Plan(mesh=dict(mesh), remat=remat, ok=False, error=f"{type(e).__name__}: {e}"[:300])
  m = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  peak = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)
  return Plan(mesh=dict(mesh), remat=remat, ok=True, peak_bytes=int(peak),
              argument_bytes=int(m.argument_size_in_bytes),
              output_bytes=int(m.output_size_in_bytes), temp_bytes=int(m.temp_size_in_bytes),
              alias_bytes=int(m.alias_size_in_bytes), flops=float((cost or {}).get("flops", 0.0)))


def plan(cfg: ml_collections.ConfigDict, num_devices: int, *,
         remats: Iterable[str] = tuple(REMAT_POLICIES),
         meshes: Iterable[dict[str, int]] | None = None,
         devices: Sequence[jax.Device] | None = None, progress=None) -> list[Plan]:
  """Every candidate (mesh x remat) compiled, cheapest first (see the module docstring)."""
  devices = list(jax.devices() if devices is None else devices)
  if len(devices) < num_devices:
    raise ValueError(f"planning for {num_devices} devices needs as many local devices to "
                     f"compile for, found {len(devices)} (on CPU set XLA_FLAGS="
                     f"--xla_force_host_platform_device_count={num_devices}; `sorax plan` "
                     "does this itself)")
  meshes = list(meshes if meshes is not None else candidate_meshes(
      num_devices, cfg.data.batch_size, cfg.model.heads))
  if not meshes:
    raise ValueError(f"no data x fsdp x tensor mesh of {num_devices} devices divides batch "
                     f"{cfg.data.batch_size} and {cfg.model.heads} heads")
  out = []
  for mesh, remat in itertools.product(meshes, list(remats)):
    out.append(compile_plan(cfg, mesh, remat, devices))
    if progress is not None:
      progress(out[-1])
  return sorted(out, key=lambda p: (not p.ok, p.cost()))


def cheapest_fit(plans: Sequence[Plan], memory_bytes: float) -> Plan | None:
  fits = [p for p in plans if p.fits(memory_bytes)]
  return min(fits, key=Plan.cost) if fits else None


def format_table(plans: Sequence[Plan], memory_bytes: float) -> str:
  lines = ["| mesh | remat | peak GiB / device | state + batch | temporaries | GFLOP / device "
           "| fits |", "|---|---|---|---|---|---|---|"]
  for p in plans:
    r = p.row()
    if not p.ok:
      lines.append(f"| {r['mesh']} | {r['remat']} | - | - | - | - | no: {r['error'][:80]} |")
      continue
    lines.append(f"| {r['mesh']} | {r['remat']} | {r['peak_gib']:.3f} | "
                 f"{r['params_opt_gib']:.3f} | {r['temp_gib']:.3f} | {r['gflops']:.1f} | "
                 f"{'yes' if p.fits(memory_bytes) else 'no'} |")
  return "\n".join(lines)


def parameter_count(cfg: ml_collections.ConfigDict) -> int:
  from sorax.train.trainer import tokenizer_for  # noqa: PLC0415
  gcfg = generator_config(cfg, tokenizer_for(cfg).vocab_size)
  model = nnx.eval_shape(lambda: Generator(gcfg, rngs=nnx.Rngs(0)))
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
