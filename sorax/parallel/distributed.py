"""Multi-host JAX: `jax.distributed` from flags or from the environment.

One process per host (TPU VM worker, SLURM task, or a local process in tests). `sorax train`
calls `initialize` before touching any device:

- explicit: `--coordinator HOST:PORT --num-processes N --process-id I`;
- Cloud TPU VMs with several workers, SLURM jobs with several tasks, or `JAX_COORDINATOR_ADDRESS`
  set: `jax.distributed.initialize()` finds everything itself (its cluster detection);
- otherwise: one process, nothing to do.

On CPU, cross-process collectives go through gloo (set here before initializing).
"""

from __future__ import annotations

import os

import jax


def cluster_from_env(env: dict[str, str] | None = None) -> str | None:
  """Which multi-process environment this is ("tpu", "slurm", "env"), or None for one process."""
  env = os.environ if env is None else env
  if env.get("JAX_COORDINATOR_ADDRESS"):
    return "env"
  if len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1:
    return "tpu"
  if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
    return "slurm"
  return None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, env: dict[str, str] | None = None) -> str:
  """Starts jax.distributed when there is more than one process. -> how: "flags", the
  `cluster_from_env` name, or "single". Raises ValueError on a partial or bad set of flags."""
  given = [coordinator is not None, num_processes is not None, process_id is not None]
  if any(given) and not all(given):
    raise ValueError("--coordinator, --num-processes and --process-id go together "
                     f"(got coordinator={coordinator!r}, num_processes={num_processes!r}, "
                     f"process_id={process_id!r})")
  if all(given):
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"--process-id {process_id} is not in [0, --num-processes "
                       f"{num_processes})")
    if ":" not in coordinator:
      raise ValueError(f"--coordinator {coordinator!r} must be HOST:PORT")
    if num_processes == 1:
      return "single"
    _cpu_collectives()
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return "flags"
  how = cluster_from_env(env)
  if how is None:
    return "single"
  _cpu_collectives()
  jax.distributed.initialize()
  return how


def _cpu_collectives() -> None:
  """CPU devices of different processes talk through gloo (the default has no cross-process
  collectives). Harmless on GPU/TPU, whose own collectives are used."""
  try:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, ValueError):  # an older or newer JAX without the option
    pass
