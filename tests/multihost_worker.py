"""One process of the multi-host test (tests/test_multihost.py):

  python -m tests.multihost_worker PROCESS_ID NUM_PROCESSES PORT WORKDIR OUT.json

Trains 3 steps of the tiny config on fixed global batches (each process puts its own rows),
saves, restores into a fresh Trainer, and writes losses, a parameter checksum and what its own
data iterator read to OUT.json."""

import json
import sys

import numpy as np


def main(pid: int, n: int, port: int, workdir: str, out: str) -> None:
  from sorax.parallel import distributed
  if n > 1:
    distributed.initialize(f"localhost:{port}", n, pid)
  import jax

  from sorax.data.pipeline import world_dataset
  from sorax.train.trainer import Trainer
  from tests.test_train import tiny

  cfg = tiny("--config.data.batch_size=4", "--config.train.steps=3",
             "--config.mesh.shape.data=-1", "--config.diffusion.text_dropout=0.0")
  tr = Trainer(cfg, workdir)
  own = next(tr.data)  # this process's share of the pipeline's first global batch
  glob = iter(world_dataset(cfg.data, tr.tokenizer, shard_index=0, shard_count=1))
  rows = slice(pid * 4 // n, (pid + 1) * 4 // n)
  losses = []
  for _ in range(3):
    batch = {k: v[rows] for k, v in next(glob).items()}
    losses.append(float(jax.device_get(tr.train_step(batch)["loss"])))
  tr.save()
  tr.close()

  def checksum(state):
    leaves = jax.tree.leaves(state.params)
    return float(sum(np.asarray(jax.jit(lambda x: (x.astype("float64") ** 2).sum())(x))
                     for x in leaves))

  before = checksum(tr.state)
  from sorax.parallel import mesh as mesh_lib
  hybrid = mesh_lib.make_mesh({"data": n}, dcn_shape={"data": n})  # data across processes
  again = Trainer(cfg, workdir)  # restores the checkpoint just written
  info = {"process_count": jax.process_count(), "devices": jax.device_count(),
          "losses": losses, "checksum": before, "restored_step": again.step,
          "restored_checksum": checksum(again.state),
          "own_ids": np.asarray(own["ids"]).tolist(),
          "dcn_rows": [d.process_index for d in hybrid.devices.flat]}
  again.close()
  with open(out, "w") as f:
    json.dump(info, f)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
