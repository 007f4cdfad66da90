"""The training loop: sharded init or resume, jitted step, metrics, checkpoints, progress bar.

    sorax train --config experiments/world.py:demo --workdir runs/demo
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import shutil
import signal
import sys
import threading
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from tqdm.auto import tqdm

from sorax import config as config_lib
from sorax import patchify as P
from sorax.data.latent_cache import cache_world, latent_dataset, read_manifest
from sorax.data.pipeline import world_dataset
from sorax.diffusion import flow
from sorax.models.codec import CODEC_KEYS
from sorax.models.generator import FROZEN_TEXT, text_tokenizer
from sorax.models.text import BOS_ID, Tokenizer
from sorax.parallel import mesh as mesh_lib
from sorax.train import state as state_lib
from sorax.train.checkpoint import Checkpointer, abstract_like
from sorax.train.metrics import MetricsWriter
from sorax.train.step import StepConfig, make_train_step


def tokenizer_for(cfg: ml_collections.ConfigDict):
  """Ours (a Tokenizer) or MiniLM's, as `model.text_encoder` says."""
  return text_tokenizer(cfg)


def num_tokens(cfg: ml_collections.ConfigDict, frames: int, height: int, width: int) -> int:
  codec = state_lib.make_codec_from(cfg)
  return int(np.prod(P.grid_shape(codec.latent_shape(frames, height, width), tuple(cfg.model.patch))))


def codec_identity(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """What a latent cache records of its codec, to refuse training on another codec's latents."""
  keys = CODEC_KEYS.get(cfg.codec.name, ())
  return {"name": cfg.codec.name, **{k: v for k, v in cfg.codec.to_dict().items() if k in keys}}


def cache_latents(cfg: ml_collections.ConfigDict, out: str | pathlib.Path, num_clips: int,
                  **kw) -> dict[str, Any]:
  """Encodes world clips 0..num_clips-1 with the run's codec into a latent cache at `out`,
  stamped with the codec's identity (`kw`: cache_world's batch_size, overwrite, ...)."""
  codec = state_lib.make_codec_from(cfg)
  return cache_world(out, cfg.data, jax.jit(codec.raw_encode), num_clips=num_clips,
                     seed=cfg.data.seed, meta={"codec": codec_identity(cfg)}, **kw)


def step_config(cfg: ml_collections.ConfigDict, null_tokens: tuple[int, ...] = (BOS_ID,)
                ) -> StepConfig:
  d = cfg.data
  if cfg.diffusion.get("palette_weight", 0.0) and not cfg.model.get("palette_head", False):
    raise ValueError("diffusion.palette_weight is the palette head's loss; set "
                     "model.palette_head=True")
  if cfg.diffusion.get("text_id_weight", 0.0) and cfg.model.get("text_encoder",
                                                                "sorax") in FROZEN_TEXT:
    raise ValueError(f"diffusion.text_id_weight trains the text encoder, but "
                     f"model.text_encoder={cfg.model.text_encoder!r} is frozen; set it to 0")
  shift = flow.resolution_shift(num_tokens(cfg, d.frames, d.height, d.width),
                                cfg.diffusion.base_tokens, cfg.diffusion.base_shift)
  return StepConfig(patch=tuple(cfg.model.patch), t_mean=cfg.diffusion.t_mean,
                    t_std=cfg.diffusion.t_std, shift=shift, text_dropout=cfg.diffusion.text_dropout,
                    ema_decay=cfg.optim.ema_decay, prediction=cfg.diffusion.prediction,
                    ema_warmup=bool(cfg.optim.get("ema_warmup", True)),
                    object_weight=cfg.diffusion.get("object_weight", 0.0),
                    motion_weight=cfg.diffusion.get("motion_weight", 0.0),
                    images_per_clip=d.get("images_per_clip", 0),
                    image_weight=d.get("image_weight", 0.5),
                    conditioning=tuple(sorted(cfg.get("conditioning", {}).items())),
                    null_tokens=tuple(null_tokens),
                    text_id_weight=cfg.diffusion.get("text_id_weight", 0.0),
                    slot_weight=cfg.diffusion.get("slot_weight", 0.0),
                    palette=tuple(tuple(int(v) for v in c) for c in cfg.model.get("palette", ()))
                    if cfg.model.get("palette_head", False) else (),
                    palette_weight=cfg.diffusion.get("palette_weight", 0.0),
                    track_weight=cfg.diffusion.get("track_weight", 0.0),
                    seam_weight=cfg.diffusion.get("seam_weight", 0.0),
                    ghost_rate=cfg.diffusion.get("ghost_rate", 0.0),
                    ghost_alpha=cfg.diffusion.get("ghost_alpha", 0.6),
                    ghost_shift=int(cfg.diffusion.get("ghost_shift", 8)),
                    self_cond_rate=cfg.diffusion.get("self_cond_rate", 0.0)
                    if cfg.model.get("self_cond", False) else 0.0,
                    image_shift=flow.resolution_shift(
                        num_tokens(cfg, 1, d.height, d.width), cfg.diffusion.base_tokens,
                        cfg.diffusion.base_shift) if d.get("images_per_clip", 0) else 1.0)


class BaseTrainer:
  """Owns the mesh, the state, the data iterator and the checkpointer of one run.

  Subclasses say what is trained: `init_state`, `make_data`, `make_step`, `batch_ndims` and
  `meta`; the loop, checkpoints, resume and metrics are shared.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
               devices=None):
    self.cfg, self.workdir = cfg, pathlib.Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self.mesh = mesh_lib.make_mesh(cfg.mesh.shape, devices, cfg.mesh.get("dcn_shape"))
    self.rules = mesh_lib.rules_from_config(cfg.mesh.rules)
    dp = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
    if cfg.data.batch_size % dp:
      raise ValueError(f"data.batch_size={cfg.data.batch_size} is not divisible by the {dp} "
                       f"data-parallel devices of mesh {dict(self.mesh.shape)}")
    self.tx = state_lib.make_optimizer(cfg)
    with mesh_lib.activate(self.mesh, self.rules):
      self.graphdef, self.state, self.shardings = self.init_state()
    self.data = self.make_data()
    self.ckpt = Checkpointer(self.workdir, keep=cfg.train.keep,
                             async_save=cfg.train.async_checkpoint)
    if self.ckpt.latest_step() is not None:
      step, self.state, _ = self.ckpt.restore(abstract_like(self.state, self.shardings), self.data)
      logging.info("resumed from step %d in %s", step, self.ckpt.directory)
    # The step on the host: read from the device once here, then counted, so the loop never
    # waits for the device just to know where it is.
    self._step = int(jax.device_get(self.state.step))
    self.preempted = False
    self._write_run_files()
    self.batch_shardings = {k: mesh_lib.batch_sharding(self.mesh, self.rules, n)
                            for k, n in self.batch_ndims().items()}
    self.step_fn = self.compile_step()

  def compile_step(self):
    """The jitted, sharded train step of `make_step` (with the current `self.tx`)."""
    return jax.jit(
        self.make_step(), in_shardings=(self.shardings, self.batch_shardings),
        out_shardings=(self.shardings, mesh_lib.replicated(self.mesh)), donate_argnums=0)

  def init_state(self):
    raise NotImplementedError

  def make_data(self):
    raise NotImplementedError

  def make_step(self):
    raise NotImplementedError

  def batch_ndims(self) -> dict[str, int]:
    raise NotImplementedError

  def meta(self) -> dict[str, Any]:
    return {"config": json.loads(config_lib.to_json(self.cfg))}

  def _write_run_files(self) -> None:
    """The config beside the checkpoints, so a workdir is self-contained."""
    if jax.process_index() != 0:
      return
    tmp = self.workdir / "config.json.tmp"
    tmp.write_text(config_lib.to_json(self.cfg))
    tmp.replace(self.workdir / "config.json")

  def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Host-local batch -> global sharded arrays (multi-host safe)."""
    return {k: jax.make_array_from_process_local_data(self.batch_shardings[k], batch[k])
            for k in self.batch_shardings}

  def train_step(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
    with mesh_lib.activate(self.mesh, self.rules):
      self.state, metrics = self.step_fn(self.state, self.put_batch(batch))
    self._step += 1
    return metrics

  @property
  def step(self) -> int:
    return self._step

  def save(self) -> None:
    self.ckpt.save(self.step, self.state, self.data, self.meta())

  def fit(self, steps: int | None = None, *, progress: bool = True) -> dict[str, float]:
    """Trains until `steps` (default cfg.train.steps) total steps; returns the last metrics.

    SIGTERM (what TPU VMs and SLURM send before preemption) or SIGINT makes it save at the end
    of the current step and return, with `self.preempted` set; a rerun resumes from there and
    continues the same loss curve. Metrics at each log step: `step_time` (s per step over the
    interval), `data_wait` (s per step spent waiting for the input pipeline), `goodput` (the
    fraction of wall time since the start spent in train steps, not in data waits,
    checkpoints or the first step's compilation)."""
    cfg = self.cfg
    total = cfg.train.steps if steps is None else steps
    writer = MetricsWriter(self.workdir) if jax.process_index() == 0 else None
    bar = tqdm(total=total, initial=self.step, disable=not progress, desc="train",
               dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 15.0)
    last: dict[str, float] = {}
    timer = _Goodput(self.step)
    stop = _StopOnSignal()
    try:
      with stop:
        while self.step < total:
          with timer.phase("data"):
            batch = next(self.data)
          with timer.phase("compile" if timer.first else "step"):
            metrics = self.train_step(batch)
          step = self.step
          bar.update(1)
          if step % cfg.train.log_every == 0 or step == total or stop.requested:
            with timer.phase("step"):  # waits for the device: the interval's real step time
              last = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not np.isfinite(last["loss"]):
              raise FloatingPointError(f"loss became {last['loss']} at step {step}")
            last.update(timer.report(step))
            last["lr"] = float(state_lib.lr_schedule(cfg)(step))
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if writer:
              writer.write(step, last)
          if step % cfg.train.checkpoint_every == 0 or step == total or stop.requested:
            with timer.phase("checkpoint"):
              self.save()
          if stop.requested:
            self.preempted = True
            logging.warning("%s at step %d: saved, stopping", stop.requested, step)
            break
    finally:
      bar.close()
      self.ckpt.wait()
      if writer:
        writer.close()
    return last

  def close(self) -> None:
    self.ckpt.close()


class _StopOnSignal:
  """Within `with`: SIGTERM/SIGINT set `requested` (the signal's name) instead of killing the
  process, so the loop can save first; the previous handlers come back on exit. Only the main
  thread can take signals; elsewhere this does nothing."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested: str | None = None
    self._old = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._old[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    self.requested = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)
    return False


class _Goodput:
  """Wall time of the loop by phase (data, step, checkpoint, compile) for the metrics."""

  def __init__(self, step: int):
    self.t0 = self.t_last = time.perf_counter()
    self.step_last = step
    self.first = True
    self.total = dict(data=0.0, step=0.0, checkpoint=0.0, compile=0.0)
    self.interval = dict(self.total)

  @contextlib.contextmanager
  def phase(self, name: str):
    t = time.perf_counter()
    try:
      yield
    finally:
      dt = time.perf_counter() - t
      self.total[name] += dt
      self.interval[name] += dt
      if name == "compile":
        self.first = False

  def report(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    n = max(step - self.step_last, 1)
    out = {"step_time": (now - self.t_last) / n, "data_wait": self.interval["data"] / n,
           "steps_per_s": n / max(now - self.t_last, 1e-9),
           "goodput": self.total["step"] / max(now - self.t0, 1e-9)}
    self.t_last, self.step_last = now, step
    self.interval = dict.fromkeys(self.interval, 0.0)
    return out


class Trainer(BaseTrainer):
  """Text-to-video: the Generator (text encoder + DiT) by flow matching on codec latents."""

  def __init__(self, cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
               devices=None):
    self.tokenizer = tokenizer_for(cfg)
    self.codec = state_lib.make_codec_from(cfg)
    self.latent_stats = None
    self.cache_manifest = None
    if cfg.data.get("latent_cache"):
      self.cache_manifest = read_manifest(cfg.data.latent_cache)
      self._check_cache(cfg)
    if hasattr(self.codec, "with_stats"):  # a learned codec: normalize its latents
      self.latent_stats = self._latent_stats(cfg, pathlib.Path(workdir))
      self.codec = self.codec.with_stats(self.latent_stats["mean"], self.latent_stats["std"])
    super().__init__(cfg, workdir, devices=devices)

  def _latent_stats(self, cfg, workdir: pathlib.Path) -> dict[str, list[float]]:
    """The run's latent mean/std: from its checkpoint when resuming (never re-measured, so a
    resumed run trains on the same normalization), else measured on cfg.codec.stats_clips clips
    drawn with a seed the training stream does not use."""
    ckpt_dir = workdir / "checkpoints"
    if ckpt_dir.is_dir():
      ckpt = Checkpointer(workdir, create=False, async_save=False)
      try:
        if ckpt.latest_step() is not None:
          return ckpt.read_meta()["latent_stats"]
      finally:
        ckpt.close()
    if self.cache_manifest is not None:  # measured over every cached clip
      st = self.cache_manifest["stats"]
      return {"mean": st["mean"], "std": st["std"]}
    from sorax.models.vae_codec import latent_stats
    data = cfg.data.to_dict()
    data.update(seed=cfg.data.seed + 7919, worker_count=0)
    it = iter(world_dataset(ml_collections.ConfigDict(data), None))
    n = max(1, cfg.codec.get("stats_clips", 64) // cfg.data.batch_size)
    stats = latent_stats(self.codec, (next(it)["video"] for _ in range(n)))
    logging.info("latent stats over %d clips: mean %s std %s", n * cfg.data.batch_size,
                 np.round(stats["mean"], 3), np.round(stats["std"], 3))
    return stats

  def _check_cache(self, cfg) -> None:
    d, m = cfg.data, self.cache_manifest
    want = list(self.codec.latent_shape(d.frames, d.height, d.width))
    if list(m["latent_shape"]) != want:
      raise ValueError(f"latent cache {d.latent_cache} holds latents {m['latent_shape']}, but "
                       f"data {d.frames}x{d.height}x{d.width} through codec {cfg.codec.name!r} "
                       f"gives {want}")
    codec_id = (m.get("meta") or {}).get("codec")
    if codec_id is not None and codec_id != codec_identity(cfg):
      raise ValueError(f"latent cache {d.latent_cache} was encoded with codec {codec_id}, this "
                       f"run uses {codec_identity(cfg)}")

  def init_state(self):
    graphdef, state, shardings = state_lib.init_state(
        self.cfg, self.tokenizer.vocab_size, self.mesh, self.rules, self.tx)
    if self.cfg.model.get("text_encoder", "sorax") in FROZEN_TEXT and not (
        self.workdir / "checkpoints").is_dir():  # a fresh run: the pretrained encoder's weights
      from sorax.models.minilm import load_minilm  # noqa: PLC0415
      text = nnx.to_pure_dict(nnx.state(load_minilm()[0], nnx.Param))
      state, copied, _, unused = state_lib.warm_start(state, {"text": text})
      if unused:
        raise ValueError(f"pretrained text encoder weights with no place: {unused[:3]}")
      logging.info("text encoder: pretrained MiniLM, %d tensors, frozen", len(copied))
    src = self.cfg.train.get("init_from")
    if src and not (self.workdir / "checkpoints").is_dir():  # a fresh run, not a resume
      from sorax.sample import Pipeline  # noqa: PLC0415
      source = Pipeline.load(src)  # a .safetensors file or another run's workdir
      state, copied, fresh, unused = state_lib.warm_start(
          state, source.params, grow_depth=bool(self.cfg.train.get("init_grow_depth")))
      if fresh and self.cfg.train.get("init_allow_fresh"):
        logging.info("warm start: %d weights keep their fresh init (train.init_allow_fresh): %s",
                     len(fresh), ", ".join(fresh))
        fresh = []
      if unused or fresh:
        raise ValueError(f"train.init_from={src!r} is another model: {len(unused)} of its "
                         f"weights have no place here, {len(fresh)} of this model's have no "
                         f"source (e.g. {', '.join((unused + fresh)[:3])})")
      logging.info("warm start from %s (step %d): %d weights copied", src, source.step,
                   len(copied))
    return graphdef, state, shardings

  def make_data(self):
    d = self.cfg.data
    if self.cache_manifest is not None:
      return iter(latent_dataset(
          d.latent_cache, self.tokenizer, text_len=d.text_len, batch_size=d.batch_size,
          caption_levels=list(d.caption_levels), caption_weights=list(d.caption_weights),
          seed=d.seed, shard_index=jax.process_index(), shard_count=jax.process_count()))
    return iter(world_dataset(d, self.tokenizer, shard_index=jax.process_index(),
                              shard_count=jax.process_count()))

  def make_step(self):
    return make_train_step(self.graphdef, self.tx, self.codec.encode,
                           step_config(self.cfg, self.tokenizer.null_tokens),
                           normalize=self.codec.normalize, fold=getattr(self.codec, "fold", None))

  def batch_ndims(self) -> dict[str, int]:
    media = "latent" if self.cache_manifest is not None else "video"
    dims = {media: 5, "ids": 2, "mask": 2}
    if self.cfg.diffusion.get("slot_weight", 0.0):
      if self.cache_manifest is not None:
        raise ValueError("diffusion.slot_weight needs the captions' attribute labels, which a "
                         "latent cache does not keep; train on rendered world clips")
      dims["labels"] = 3
    return dims

  def meta(self) -> dict[str, Any]:
    meta = {**super().meta(), "vocab_size": self.tokenizer.vocab_size}
    if self.latent_stats is not None:
      meta["latent_stats"] = self.latent_stats
    return meta

  def _write_run_files(self) -> None:
    """The tokenizer too: a workdir samples without the repo's assets."""
    super()._write_run_files()
    tok = self.workdir / "tokenizer.model"
    if jax.process_index() == 0 and isinstance(self.tokenizer, Tokenizer) and not tok.exists():
      shutil.copyfile(self.tokenizer.path, tok)


def trainer_class(cfg: ml_collections.ConfigDict) -> type[BaseTrainer]:
  """The config's `kind` picks what is trained: "dit" (default) or "vae"."""
  kind = cfg.get("kind", "dit")
  if kind == "dit":
    return Trainer
  if kind == "vae":
    from sorax.train.vae_trainer import VAETrainer
    return VAETrainer
  raise ValueError(f"unknown config kind {kind!r}; choose from ['dit', 'vae']")


def train(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
          progress: bool = True) -> tuple[dict[str, float], bool]:
  """-> (the last metrics, whether a signal stopped it early: rerun to resume)."""
  trainer = trainer_class(cfg)(cfg, workdir)
  try:
    return trainer.fit(progress=progress), trainer.preempted
  finally:
    trainer.close()
