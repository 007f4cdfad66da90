"""Device mesh, logical axis rules and sharding helpers.

Models name their axes logically (`embed`, `mlp`, `heads`, `act_batch`, ...). A config's rules
table maps those names to the four mesh axes `data`, `fsdp`, `tensor` and `sequence`; changing
the mesh and the rules is all it takes to move from 1 CPU to a pod slice.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
from flax import linen as nn
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor", "sequence")
Rules = tuple[tuple[str, Any], ...]


def make_mesh(shape: Mapping[str, int], devices: Sequence[jax.Device] | None = None,
              dcn_shape: Mapping[str, int] | None = None) -> Mesh:
  """Builds a mesh with axes (data, fsdp, tensor, sequence).

  `shape` maps axis -> size; at most one size may be -1 ("all remaining devices"); missing
  axes are 1. The product must equal the number of devices used. Devices are laid out by
  `jax.make_mesh` (topology-aware: neighbouring mesh positions are neighbouring chips on
  TPU). `dcn_shape` (config `mesh.dcn_shape`) splits axes across slices (multi-slice TPU,
  or processes elsewhere) for a hybrid ICI x DCN mesh: each axis's size in `shape` is then the
  total, `dcn_shape[axis]` of it across slices, the rest inside one.
  """
  unknown = set(shape) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"unknown mesh axes {sorted(unknown)}; expected a subset of {MESH_AXES}")
  devices = list(jax.devices() if devices is None else devices)
  sizes = {a: int(shape.get(a, 1)) for a in MESH_AXES}
  free = [a for a, s in sizes.items() if s == -1]
  if len(free) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {free}")
  known = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if len(devices) % known:
      raise ValueError(f"mesh {dict(shape)} does not divide {len(devices)} devices")
    sizes[free[0]] = len(devices) // known
  total = math.prod(sizes.values())
  if total > len(devices) or any(s < 1 for s in sizes.values()):
    raise ValueError(f"mesh {sizes} needs {total} devices, {len(devices)} available")
  devices = devices[:total]
  dcn = _dcn_sizes(dcn_shape or {}, sizes)
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if math.prod(dcn.values()) == 1:
    grid = jax.make_mesh([sizes[a] for a in MESH_AXES], MESH_AXES, axis_types,
                         devices=devices).devices
    return Mesh(grid, MESH_AXES, axis_types=axis_types)
  from jax.experimental import mesh_utils  # noqa: PLC0415
  # Granules over DCN: TPU slices, else processes (GPU hosts; CPU processes in tests).
  want = math.prod(dcn.values())
  count = {g: len({getattr(d, g, 0) for d in devices}) for g in ("slice_index", "process_index")}
  granule = "slice_index" if count["slice_index"] == want else "process_index"
  if count[granule] != want:
    raise ValueError(f"mesh.dcn_shape {dcn} spans {want} slices, but the {len(devices)} "
                     f"devices are in {count['slice_index']} slice(s) and "
                     f"{count['process_index']} process(es)")
  grid = mesh_utils.create_hybrid_device_mesh(
      [sizes[a] // dcn[a] for a in MESH_AXES], [dcn[a] for a in MESH_AXES], devices,
      process_is_granule=granule == "process_index")
  return Mesh(grid, MESH_AXES, axis_types=axis_types)


def _dcn_sizes(dcn_shape: Mapping[str, int], sizes: Mapping[str, int]) -> dict[str, int]:
  unknown = set(dcn_shape) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"unknown mesh.dcn_shape axes {sorted(unknown)}; expected a subset of "
                     f"{MESH_AXES}")
  dcn = {a: int(dcn_shape.get(a, 1)) for a in MESH_AXES}
  bad = [a for a in MESH_AXES if dcn[a] < 1 or sizes[a] % dcn[a]]
  if bad:
    raise ValueError(f"mesh.dcn_shape {dcn} does not divide mesh {dict(sizes)} on {bad}")
  return dcn


def rules_from_config(rules: Sequence[Sequence[Any]]) -> Rules:
  """Normalises a config's rules list [[logical, mesh_axis|[axes]|None], ...] into a tuple."""
  out = []
  for item in rules:
    if len(item) != 2:
      raise ValueError(f"a logical axis rule must be [logical_name, mesh_axes], got {item!r}")
    name, target = item
    if isinstance(target, (list, tuple)):
      target = tuple(target)
      bad = [t for t in target if t not in MESH_AXES]
    else:
      bad = [] if target is None or target in MESH_AXES else [target]
    if bad:
      raise ValueError(f"rule for {name!r} names unknown mesh axes {bad}; use {MESH_AXES}")
    out.append((str(name), target))
  return tuple(out)


@contextlib.contextmanager
def activate(mesh: Mesh, rules: Rules) -> Iterator[None]:
  """Makes `mesh` the current mesh and `rules` the logical axis rules (for `constrain`)."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield


def constrain(x: jax.Array, axes: tuple[str | None, ...]) -> jax.Array:
  """Sharding constraint by logical names; a no-op outside `activate`."""
  return nn.with_logical_constraint(x, PartitionSpec(*axes))


def logical_to_sharding(logical_specs: Any, mesh: Mesh, rules: Rules) -> Any:
  """Pytree of logical PartitionSpecs -> pytree of NamedShardings on `mesh`."""
  return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def state_shardings(abstract_state: Any, mesh: Mesh, rules: Rules) -> Any:
  """NamedShardings for an nnx.State whose variables carry `out_sharding` metadata.

  Variables without names are replicated.
  """
  # get_partition_spec applies the rules in context itself; read the raw logical names here.
  with nn.logical_axis_rules(()):
    specs = nnx.get_partition_spec(abstract_state)
  return logical_to_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules: Rules, ndim: int) -> NamedSharding:
  """Sharding of a [B, ...] input batch: batch split like `act_batch`, the rest replicated."""
  spec = nn.logical_to_mesh_axes(("act_batch",) + (None,) * (ndim - 1), rules)
  return NamedSharding(mesh, spec)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
