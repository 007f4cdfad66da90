"""A learned video captioner for the world: what each object colour in a video is doing.

Asked about one object colour of a video, it answers four questions: is an object of that
colour there, and if so its shape, its size and its motion, where the motion has one class
beyond the world's nine, `broken`: the colour is drawn, but as no single object of the world
does (two copies at once, a jump, a blob that comes and goes). It is trained on world clips
and their specs alone, with those faults painted in (sorax/train/captioner_trainer.py), and
knows neither the DiT nor the oracle.

A wall reader (`CaptionerConfig.wall`) answers one more question per video: does a gray wall
stand in it (a linear read of the wall-gray plane's column profile).

Its use: best-of-K (`Pipeline.generate(best_of=K, judge="captioner")`, sorax/sample.py) keeps
the candidate whose caption the captioner finds most likely for the prompt (`score_videos`:
every asked object present with its shape and motion, every other colour absent, the wall as
asked); the DALL-E-style "generate, then let a learned judge pick", with a judge that reads the
picture and the words.

The input is the video seen through the asked colour: three planes per pixel (how close it is
to the asked colour, to any other object colour, to the wall's gray), so one set of weights
answers for every colour and a colour the net rarely saw is no harder than a common one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, traverse_util

from sorax.data.spec import (MOTIONS, OBJECT_COLORS, SHAPES, SIZE_FRACTION, SIZES, WALL_COLOR,
                             ObjectSpec)
from sorax.models import weights

COLORS = tuple(OBJECT_COLORS)
MOTION_CLASSES = MOTIONS + ("broken",)
BROKEN = len(MOTIONS)
_RGB = np.asarray([OBJECT_COLORS[c] for c in COLORS], np.float32) / 255.0  # [C, 3]
_WALL = np.asarray(WALL_COLOR, np.float32) / 255.0
# Width of the colour match, in [0, 1] RGB units: the palette colours are >= 0.2 apart, and a
# decoded pixel within ~0.1 of its colour still counts.
_SIGMA = 0.12


@dataclasses.dataclass(frozen=True)
class CaptionerConfig:
  # Per stage: a (time, height, width) block of the grid is merged into one cell (space to
  # depth) and a dense layer maps it to `width` channels: a strided convolution whose kernel is
  # its stride. On 2 CPU cores this trains ~10x faster than overlapping 3D convolutions, whose
  # kernel gradients XLA computes slowly there; the last stage keeps where and when.
  merges: tuple[tuple[int, int, int], ...] = ((1, 4, 4), (1, 2, 2), (2, 1, 1))
  widths: tuple[int, ...] = (32, 64, 64)
  hidden: int = 256
  frames: int = 17
  height: int = 32
  width: int = 32
  # Width of the track branch (0: none): an MLP on the asked colour's per-frame track
  # (`track_features`: area, centroid, spread, box), added to the hidden layer. The merged
  # stages see 4x4-pixel cells, so a one-pixel drift or a step back is blurred before any
  # layer can compare frames; the track keeps it (BUILD_NOTES, "The captioner reads tracks").
  tracks: int = 0
  # The wall reader: one logit for "a gray wall stands in the clip", a linear map of the
  # wall plane's column profile (its mean over frames and rows), so a wall drawn faint, in part
  # of the frames or not at all reads as less likely. The object answers never see the wall
  # question, so a prompt's wall went unjudged before it (BUILD_NOTES, "The judge reads the wall").
  wall: bool = False


def _merge(h: jax.Array, m: tuple[int, int, int]) -> jax.Array:
  """[B, T, H, W, C] -> [B, T/mt, H/mh, W/mw, mt*mh*mw*C]; T is padded with zero frames at the
  end to a multiple of mt (H and W must divide)."""
  b, t, hh, ww, c = h.shape
  mt, mh, mw = m
  if t % mt:
    h = jnp.pad(h, ((0, 0), (0, mt - t % mt), (0, 0), (0, 0), (0, 0)))
    t = h.shape[1]
  h = h.reshape(b, t // mt, mt, hh // mh, mh, ww // mw, mw, c)
  return h.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, t // mt, hh // mh, ww // mw, -1)


def colour_planes(video: jax.Array, color: jax.Array) -> jax.Array:
  """video [B, T, H, W, 3] in [0, 1], color int [B] (index into COLORS) -> [B, T, H, W, 3]:
  the match to the asked colour, to the nearest other object colour, and to the wall."""
  d = jnp.sum(jnp.square(video[..., None, :] - jnp.asarray(_RGB)), -1)  # [B, T, H, W, C]
  match = jnp.exp(-d / (2 * _SIGMA ** 2))
  asked = jax.nn.one_hot(color, len(COLORS))[:, None, None, None, :]  # [B, 1, 1, 1, C]
  mine = jnp.sum(match * asked, -1)
  other = jnp.max(match * (1.0 - asked), -1)
  wall = jnp.exp(-jnp.sum(jnp.square(video - jnp.asarray(_WALL)), -1) / (2 * _SIGMA ** 2))
  return jnp.stack([mine, other, wall], -1)


TRACK_FEATURES = 10  # per frame: seen, area, centroid (x, y), spread (x, y), box (x0, x1, y0, y1)


def track_features(mine: jax.Array) -> jax.Array:
  """[B, T, H, W] match to the asked colour (colour_planes' first plane) -> [B, T, 10]: per
  frame whether the colour is seen, its area (in units of a small object's), the centroid and
  the spread (std) of its pixels and their bounding box, in canvas fractions. Pixels count only
  where at least 4 of their 3x3 neighbourhood (themselves included) match (a crude opening, as
  a scorer reads solid blobs), so stray specks move no coordinate; frames where nothing is
  left read as unseen, with the canvas centre as centroid."""
  b, t, h, w = mine.shape
  nb = jax.lax.reduce_window(jnp.pad(mine, ((0, 0), (0, 0), (1, 1), (1, 1))), 0.0, jax.lax.add,
                             (1, 1, 3, 3), (1, 1, 1, 1), "VALID")
  m = mine * (nb > 3.5)
  ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
  xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
  area = jnp.sum(m, (2, 3))  # [B, T] in pixels
  seen = area > 4.0
  den = jnp.maximum(area, 1e-6)
  cx = jnp.sum(m * xs, (2, 3)) / den
  cy = jnp.sum(m * ys[:, None], (2, 3)) / den
  sx = jnp.sqrt(jnp.maximum(jnp.sum(m * xs ** 2, (2, 3)) / den - cx ** 2, 0.0))
  sy = jnp.sqrt(jnp.maximum(jnp.sum(m * ys[:, None] ** 2, (2, 3)) / den - cy ** 2, 0.0))
  on = m > 0.5
  x0 = jnp.min(jnp.where(on, xs, 1.0), (2, 3))
  x1 = jnp.max(jnp.where(on, xs, 0.0), (2, 3))
  y0 = jnp.min(jnp.where(on, ys[:, None], 1.0), (2, 3))
  y1 = jnp.max(jnp.where(on, ys[:, None], 0.0), (2, 3))
  small = (SIZE_FRACTION["small"] * min(h, w)) ** 2
  feats = [seen.astype(jnp.float32), area / small, cx, cy, 4 * sx, 4 * sy, x0, x1, y0, y1]
  centre = jnp.asarray([0, 0, 0.5, 0.5, 0, 0, 0.5, 0.5, 0.5, 0.5], jnp.float32)
  return jnp.where(seen[..., None], jnp.stack(feats, -1), centre)


class Captioner(nnx.Module):
  """(video [B, T, H, W, 3] in [0, 1], color int [B]) -> dict of logits: present [B],
  shape [B, 4], size [B, 2], motion [B, 10] (MOTION_CLASSES), and with `cfg.wall` wall [B]
  (the same for every colour of a video)."""

  def __init__(self, cfg: CaptionerConfig = CaptionerConfig(), *, rngs: nnx.Rngs):
    if len(cfg.merges) != len(cfg.widths):
      raise ValueError(f"captioner: {len(cfg.widths)} widths but {len(cfg.merges)} merges")
    self.cfg = cfg
    self.stages = nnx.List()
    cin, t, h, w = 3, cfg.frames, cfg.height, cfg.width
    for width, (mt, mh, mw) in zip(cfg.widths, cfg.merges):
      if h % mh or w % mw:
        raise ValueError(f"captioner: merge {(mt, mh, mw)} does not divide {h}x{w}")
      self.stages.append(nnx.Linear(cin * mt * mh * mw, width, rngs=rngs))
      cin, t, h, w = width, -(-t // mt), h // mh, w // mw
    self.norm = nnx.LayerNorm(cin * t * h * w, rngs=rngs)
    self.hidden = nnx.Linear(cin * t * h * w, cfg.hidden, rngs=rngs)
    if cfg.tracks:
      self.track_in = nnx.Linear(cfg.frames * TRACK_FEATURES, cfg.tracks, rngs=rngs)
      # Zero-initialised into the hidden layer: a captioner given a track branch keeps its
      # function until training moves it (captioner_trainer --init F --tracks N).
      self.track_out = nnx.Linear(cfg.tracks, cfg.hidden, kernel_init=nnx.initializers.zeros,
                                  rngs=rngs)
    if cfg.wall:
      self.wall_head = nnx.Linear(cfg.width, 1, rngs=rngs)
    self.heads = nnx.Linear(cfg.hidden, 1 + len(SHAPES) + len(SIZES) + len(MOTION_CLASSES),
                            rngs=rngs)

  def __call__(self, video: jax.Array, color: jax.Array) -> dict[str, jax.Array]:
    c = self.cfg
    if video.shape[1:] != (c.frames, c.height, c.width, 3):
      raise ValueError(f"captioner takes videos [B, {c.frames}, {c.height}, {c.width}, 3], "
                       f"got {video.shape}")
    planes = h = colour_planes(video, color)
    for stage, m in zip(self.stages, c.merges):
      h = jax.nn.gelu(stage(_merge(h, m)))
    h = self.hidden(self.norm(h.reshape(h.shape[0], -1)))
    if c.tracks:
      f = track_features(planes[..., 0]).reshape(h.shape[0], -1)
      h = h + self.track_out(jax.nn.gelu(self.track_in(f)))
    h = jax.nn.gelu(h)
    out = self.heads(h)
    s0, s1, s2 = 1, 1 + len(SHAPES), 1 + len(SHAPES) + len(SIZES)
    logits = {"present": out[:, 0], "shape": out[:, s0:s1], "size": out[:, s1:s2],
              "motion": out[:, s2:]}
    if c.wall:
      logits["wall"] = self.wall_head(planes[..., 2].mean((1, 2)))[:, 0]  # [B, W] -> [B]
    return logits


def targets(objects: Sequence[ObjectSpec]) -> dict[str, np.ndarray]:
  """The caption a prompt asks for, one row per colour of COLORS: present [C] (0/1), shape,
  size and motion class indices [C] (0 where absent)."""
  out = {k: np.zeros(len(COLORS), np.int32) for k in ("present", "shape", "size", "motion")}
  for o in objects:
    i = COLORS.index(o.color)
    out["present"][i] = 1
    out["shape"][i] = SHAPES.index(o.shape)
    out["size"][i] = SIZES.index(o.size)
    out["motion"][i] = MOTIONS.index(o.motion)
  return out


# How much each answer counts in a candidate's score (score_videos). Size is left out: on the
# shipped DiT's samples the captioner reads a quarter of the asked-large objects the oracle reads
# large as small (their ragged edges), and within a prompt its size term ranks right
# candidates below wrong ones (pairwise 0.33-0.36; BUILD_NOTES, "A learned judge"). The wall
# counts once per video, where the captioner has a wall reader and the caller says which wall
# the prompt asks for (score_videos' `walls`).
SCORE_WEIGHTS = {"present": 1.0, "shape": 1.0, "size": 0.0, "motion": 1.0, "wall": 1.0}


def row_logprob(logits: dict[str, jax.Array], want: dict[str, jax.Array],
                weights: dict[str, float] | None = None) -> jax.Array:
  """Weighted log p(each row's caption is `want`'s) -> [B]: log p(absent) where
  want["present"] is 0, else the weighted sum of log p(present), log p(shape), log p(size)
  and log p(motion) (`weights`, default all 1)."""
  w = {"present": 1.0, "shape": 1.0, "size": 1.0, "motion": 1.0, **(weights or {})}

  def pick(name):
    return jnp.take_along_axis(jax.nn.log_softmax(logits[name]), want[name][:, None], 1)[:, 0]
  on = (w["present"] * jax.nn.log_sigmoid(logits["present"]) + w["shape"] * pick("shape")
        + w["size"] * pick("size") + w["motion"] * pick("motion"))
  return jnp.where(want["present"] > 0, on, jax.nn.log_sigmoid(-logits["present"]))


ASSET = "sorax/assets/captioner_world32.safetensors"  # relative to the repository root


def asset_path() -> pathlib.Path:
  """The shipped captioner's path (sorax/assets/captioner_world32.safetensors)."""
  return pathlib.Path(__file__).resolve().parents[2] / ASSET


def save(path, model: Captioner, *, meta: dict | None = None, dtype=np.float32) -> None:
  """Writes the captioner's weights (as `dtype`; `load` reads them back as float32) and its
  config to `path` atomically."""
  tensors = {k: np.ascontiguousarray(v.astype(dtype))
             for k, v in weights.flat_tensors(nnx.state(model, nnx.Param)).items()}
  info = {"config": json.dumps(dataclasses.asdict(model.cfg)), "kind": "sorax-captioner"}
  info.update({k: str(v) for k, v in (meta or {}).items()})
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  weights.write_safetensors(out, out.with_name(f".{out.name}.tmp-{os.getpid()}"), tensors, info)


def load(path=None) -> Captioner:
  """The captioner saved at `path` (default: the shipped asset). A missing or foreign file is
  one clear error."""
  from safetensors import safe_open  # noqa: PLC0415
  p = pathlib.Path(path) if path else asset_path()
  if not p.is_file():
    raise FileNotFoundError(f"captioner weights {p} not found (train one with "
                            "`python -m sorax.train.captioner_trainer --out {p}`)")
  try:
    with safe_open(str(p), "np") as f:
      info = f.metadata() or {}
      tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iter)
  except Exception as e:  # noqa: BLE001 (safetensors raises its own types)
    raise ValueError(f"captioner weights {p}: not a safetensors file ({e})") from None
  if info.get("kind") != "sorax-captioner":
    raise ValueError(f"captioner weights {p}: not a sorax captioner (kind "
                     f"{info.get('kind')!r})")
  cfg = json.loads(info["config"])

  def tup(v):
    return tuple(tup(x) for x in v) if isinstance(v, list) else v
  cfg = CaptionerConfig(**{k: tup(v) for k, v in cfg.items()})
  model = Captioner(cfg, rngs=nnx.Rngs(0))
  pure = traverse_util.unflatten_dict({tuple(int(s) if s.isdigit() else s
                                             for s in k.split(".")): jnp.asarray(v, jnp.float32)
                                       for k, v in tensors.items()})
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  return model


def _regrown(model: Captioner, seed: int, **changes) -> Captioner:
  """A captioner of `model`'s config with `changes`, every weight the two share copied over
  (new parts keep their fresh initialisation)."""
  new = Captioner(dataclasses.replace(model.cfg, **changes), rngs=nnx.Rngs(seed))
  old = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  state = nnx.state(new, nnx.Param)
  pure = nnx.to_pure_dict(state)
  pure.update({k: v for k, v in old.items() if k in pure})
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(new, state)
  return new


def with_tracks(model: Captioner, tracks: int, *, seed: int = 0) -> Captioner:
  """A copy of `model` with a track branch of width `tracks` (0: none), every other weight
  kept; a new branch adds nothing until trained (its output layer starts at zero)."""
  if model.cfg.tracks and tracks:
    raise ValueError(f"captioner already has a track branch of width {model.cfg.tracks}")
  return _regrown(model, seed, tracks=tracks)


def with_wall(model: Captioner, *, seed: int = 0) -> Captioner:
  """A copy of `model` with a wall reader (CaptionerConfig.wall), every other weight kept."""
  if model.cfg.wall:
    raise ValueError("captioner already has a wall reader")
  return _regrown(model, seed, wall=True)


@nnx.jit
def _logits(model: Captioner, video: jax.Array, color: jax.Array) -> dict[str, jax.Array]:
  return model(video.astype(jnp.float32) / 255.0, color)


def score_videos(model: Captioner, videos: np.ndarray,
                 objects: Sequence[Sequence[ObjectSpec]], *, batch: int = 32,
                 weights: dict[str, float] | None = None,
                 walls: Sequence[bool] | None = None) -> np.ndarray:
  """log p(video i's caption is the one `objects[i]` asks for) -> float [n]: each asked object
  present with its shape, size and motion, every other colour absent (a sum over COLORS), each
  answer weighted by `weights` (default SCORE_WEIGHTS); with `walls` (the asked wall per video)
  and a captioner that reads the wall, plus weights["wall"] * log p(the wall is as asked).
  videos uint8 [n, T, H, W, 3]."""
  weights = SCORE_WEIGHTS if weights is None else weights
  if walls is not None and len(walls) != len(objects):
    raise ValueError(f"{len(walls)} walls for {len(objects)} prompts")
  read_wall = walls is not None and model.cfg.wall and weights.get("wall", 0.0) != 0.0
  videos = np.asarray(videos)
  if videos.ndim != 5 or len(videos) != len(objects):
    raise ValueError(f"videos {videos.shape} must be [n, T, H, W, 3] for {len(objects)} prompts")
  n, c = len(videos), len(COLORS)
  want = [targets(o) for o in objects]
  out = np.zeros(n, np.float32)
  colors = np.tile(np.arange(c, dtype=np.int32), batch)
  for s in range(0, n, batch):
    v = videos[s:s + batch]
    b = len(v)
    rows = np.repeat(v, c, axis=0)  # [b * C, T, H, W, 3]: every colour of every video
    logits = _logits(model, jnp.asarray(rows), jnp.asarray(colors[:b * c]))
    w = {k: jnp.asarray(np.concatenate([wi[k] for wi in want[s:s + b]])) for k in want[0]}
    out[s:s + b] = np.asarray(row_logprob(logits, w, weights)).reshape(b, c).sum(1)
    if read_wall:
      asked = np.asarray(walls[s:s + b], bool)
      z = np.asarray(logits["wall"]).reshape(b, c)[:, 0]  # every colour row reads the same wall
      out[s:s + b] += weights["wall"] * np.where(asked, -np.logaddexp(0, -z), -np.logaddexp(0, z))
  return out
