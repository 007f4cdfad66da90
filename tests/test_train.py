"""Training loop, checkpoints and resumption."""

import json

import jax
import numpy as np
import pytest

from sorax import config as config_lib
from sorax.sample import Pipeline
from sorax.train.checkpoint import CheckpointError
from sorax.train.trainer import Trainer
from tests.test_config import WORLD

TINY = ["--config.codec.name=space_to_depth",  # pixel latents: no trained weights
        "--config.model.width=32", "--config.model.depth=2", "--config.model.heads=2",
        "--config.model.text_width=32", "--config.model.text_depth=1",
        "--config.data.height=16", "--config.data.width=16", "--config.data.frames=2",
        "--config.data.batch_size=2", "--config.data.text_len=16",
        "--config.optim.warmup_steps=1", "--config.train.log_every=1",
        "--config.mesh.shape.data=1", "--config.sample.steps=2"]


def tiny(*extra):
  return config_lib.load_config(f"{WORLD}:demo", TINY + list(extra))


def tiny_pipeline(workdir, steps: int, *extra):
  """A tiny model trained `steps` steps at lr 1e-2 (so zero-init heads have moved), loaded as a
  Pipeline from its workdir."""
  from sorax.sample import Pipeline  # noqa: PLC0415
  tr = Trainer(tiny(f"--config.train.steps={steps}", "--config.optim.lr=1e-2", *extra), workdir)
  tr.fit(steps, progress=False)
  tr.close()
  return Pipeline.load(workdir)


def _params(trainer):
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(trainer.state.params))]


def test_resume_gives_the_identical_next_step(tmp_path):
  cfg = tiny("--config.train.steps=3", "--config.train.checkpoint_every=2")
  straight = Trainer(cfg, tmp_path / "a")
  straight.fit(3, progress=False)
  straight.close()

  first = Trainer(cfg, tmp_path / "b")
  first.fit(2, progress=False)  # checkpoint at step 2, then "preempted"
  first.close()
  resumed = Trainer(cfg, tmp_path / "b")
  assert resumed.step == 2
  m = resumed.fit(3, progress=False)
  resumed.close()
  for a, b in zip(_params(straight), _params(resumed)):
    np.testing.assert_array_equal(a, b)  # same data, same rng, same math: bit-identical
  lines = [json.loads(l) for l in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [1, 2, 3] and np.isfinite(m["loss"])
  assert (tmp_path / "b" / "tokenizer.model").is_file()
  assert json.loads((tmp_path / "b" / "config.json").read_text())["model"]["width"] == 32


def test_keep_n_and_sampling_from_checkpoint(tmp_path):
  # train.steps=3 as in the resume test: the same compiled step (the session's XLA cache).
  cfg = tiny("--config.train.steps=3", "--config.train.checkpoint_every=1", "--config.train.keep=2")
  tr = Trainer(cfg, tmp_path)
  tr.fit(progress=False)
  tr.close()
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [2, 3]
  pipe = Pipeline.load(tmp_path)
  assert pipe.step == 3
  vids = pipe.generate(["red circle", "small blue square falling on a navy background"],
                       frames=4, height=16, width=32)
  assert vids.shape == (2, 4, 16, 32, 3) and vids.dtype == np.uint8
  again = pipe.generate(["red circle"], frames=4, height=16, width=32)
  np.testing.assert_array_equal(again[0], vids[0])  # same seed, same video
  with pytest.raises(ValueError, match="height=18 must be a positive multiple of 8"):
    pipe.generate(["red circle"], frames=4, height=18, width=32)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(CheckpointError, match="not found"):
    Pipeline.load(tmp_path / "nothing")
  (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="holds no saved step"):
    Pipeline.load(tmp_path / "empty")



def test_loss_falls_on_a_fixed_batch_and_val_losses_fall_with_training(tmp_path):
  """One trainer (one compile): the loss falls on a fixed batch; the held-out denoising loss
  gives the same numbers twice, and is lower after training on fresh batches."""
  from sorax.train.validate import val_losses
  tr = Trainer(tiny("--config.optim.lr=3e-3", "--config.diffusion.text_dropout=0.0"), tmp_path)
  args = (tr.graphdef, tr.codec, tr.tokenizer, tr.cfg)
  before = val_losses(tr.graphdef, tr.state.params, *args[1:], n=4, batch=2)
  assert before == val_losses(tr.graphdef, tr.state.params, *args[1:], n=4, batch=2)
  assert set(before) >= {"x0_mse", "x0_mse_object", "x0_mse_motion", "x0_mse_t0.5"}
  batch = next(tr.data)
  losses = [float(tr.train_step(batch)["loss"]) for _ in range(40)]
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
  for _ in range(40):
    tr.train_step(next(tr.data))
  after = val_losses(tr.graphdef, tr.state.params, *args[1:], n=4, batch=2)
  tr.close()
  assert after["x0_mse"] < before["x0_mse"], (before, after)
