"""Metrics to TensorBoard event files (tensorboardX) and to metrics.jsonl beside them."""

from __future__ import annotations

import json
import pathlib

from tensorboardX import SummaryWriter


class MetricsWriter:
  def __init__(self, workdir: str | pathlib.Path):
    self.workdir = pathlib.Path(workdir)
    self.tb = SummaryWriter(str(self.workdir / "tb"))
    self.jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")

  def write(self, step: int, scalars: dict[str, float]) -> None:
    for k, v in scalars.items():
      self.tb.add_scalar(k, v, step)
    self.jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self.jsonl.flush()

  def close(self) -> None:
    self.tb.close()
    self.jsonl.close()
