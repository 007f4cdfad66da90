"""Text-to-video generation from a trained checkpoint.

    pipe = Pipeline.load("runs/demo")
    videos = pipe.generate(["large red circle moving right on a navy background"])
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from sorax import patchify as P
from sorax.diffusion import conditioning as cond
from sorax.diffusion import flow, rerank, samplers
from sorax.data.captions import parse_terse
from sorax.models import captioner as cap_lib
from sorax.models.codec import from_pixels, to_pixels
from sorax.models.text import Tokenizer
from sorax.models.generator import Generator, generator_config, make_codec_from, text_tokenizer
from sorax.models import weights as weights_lib
from sorax.sample_program import sampling_fn

# How classifier-free guidance mixes the conditional and null predictions (Pipeline.generate).
GUIDES = ("velocity", "logits")
# Who picks among best-of-K candidates (Pipeline.generate): the DiT's own denoising error
# (sorax/diffusion/rerank.py), or the learned world captioner (sorax/models/captioner.py) where
# the prompt is a terse world caption and the clip is the captioner's size (else the DiT's).
JUDGES = ("self", "captioner")


@dataclasses.dataclass
class Pipeline:
  cfg: ml_collections.ConfigDict
  graphdef: nnx.GraphDef
  params: Any
  tokenizer: Tokenizer
  step: int = 0
  latent_stats: dict | None = None  # per-channel latent mean/std of a VAE codec
  # The content policy every prompt passes before generation (None: off, explicitly).
  policy: Any = dataclasses.field(default_factory=lambda: _default_policy())

  @classmethod
  def load(cls, path: str | pathlib.Path | None = None, step: int | None = None) -> "Pipeline":
    """Loads a model: a weights file (`.safetensors`, see sorax/models/weights.py; None = the
    shipped world checkpoint) or the EMA weights of a training workdir (or its checkpoints/).

    A workdir restores the whole train state (then all but the EMA dropped): simple, but it
    costs three times the weights' memory while loading.
    """
    if (path is None or pathlib.Path(path).suffix == ".safetensors"
        or pathlib.Path(path).is_file() or weights_lib.is_orbax_export(path)):
      return cls.from_weights(weights_lib.SHIPPED if path is None else path)
    # A training checkpoint: Orbax and the optimizer live in sorax/train.
    from sorax.train.checkpoint import CheckpointError, checkpoint_dir, restore_ema  # noqa: PLC0415
    holder = {}

    def make(cfg, meta):
      tokenizer = text_tokenizer(cfg, checkpoint_dir(path).parent)
      if tokenizer.vocab_size != meta["vocab_size"]:
        raise CheckpointError(f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} pieces, "
                              f"checkpoint {path} was trained with {meta['vocab_size']}")
      holder["tokenizer"] = tokenizer
      gcfg = generator_config(cfg, meta["vocab_size"])
      return gcfg, lambda: Generator(gcfg, rngs=nnx.Rngs(0))

    ckstep, graphdef, params, meta, _ = restore_ema(path, make, step)
    cfg = ml_collections.ConfigDict(meta["config"])
    cfg.lock()
    return cls(cfg=cfg, graphdef=graphdef, params=params, tokenizer=holder["tokenizer"],
               step=ckstep, latent_stats=meta.get("latent_stats"))

  @classmethod
  def from_weights(cls, path: str | pathlib.Path) -> "Pipeline":
    """A weights-only file; its tokenizer is the shipped one, or MiniLM's for a model with that
    text encoder (checked by hash)."""
    g = weights_lib.load_generator(path)
    tokenizer = text_tokenizer(g.cfg)
    if g.tokenizer_sha256 and weights_lib.file_sha256(tokenizer.path) != g.tokenizer_sha256:
      raise weights_lib.WeightsError(f"weights file {path} was trained with another tokenizer "
                                     f"than {tokenizer.path}")
    if tokenizer.vocab_size != g.vocab_size:
      raise weights_lib.WeightsError(f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} "
                                     f"pieces, weights file {path} wants {g.vocab_size}")
    return cls(cfg=g.cfg, graphdef=g.graphdef, params=g.params, tokenizer=tokenizer,
               step=g.step, latent_stats=g.latent_stats)

  def save_weights(self, path: str | pathlib.Path, dtype: str = "float16", *,
                   layout: str = "stacked", format: str = "safetensors") -> pathlib.Path:  # noqa: A002
    """This model as a weights-only file (`sorax export` writes layout="per_layer"; see
    `weights_lib.save_generator`)."""
    return weights_lib.save_generator(
        path, self.params, config=self.cfg, vocab_size=self.tokenizer.vocab_size,
        latent_stats=self.latent_stats, tokenizer_sha256=weights_lib.file_sha256(
            self.tokenizer.path), step=self.step, dtype=dtype, layout=layout, format=format)

  @functools.cached_property
  def codec(self):
    return make_codec_from(self.cfg, self.latent_stats)

  def generate(self, prompts: Sequence[str], *, frames: int | None = None,
               height: int | None = None, width: int | None = None, steps: int | None = None,
               cfg_scale: float | None = None, sampler: str | None = None, seed: int = 0,
               batch_size: int = 8, known: np.ndarray | None = None,
               given: np.ndarray | None = None, strength: float = 1.0,
               eta: float | None = None, eta_late: tuple[float, float] | None = None,
               quiet: int = 0, guide_context: float = 0.0,
               guidance_interval: tuple[float, float] | None = None,
               guide: str | None = None, best_of: int | None = None,
               judge: str | None = None, time_shift: float | None = None,
               best_of_stop: float | None = None, best_of_min: int | None = None,
               report: dict | None = None, rows: Sequence[int] | None = None) -> np.ndarray:
    """-> uint8 [len(prompts), T, H, W, 3]. Sizes default to the training clip size.
    Raises PolicyViolation (naming the category) before generating anything when a prompt is
    refused by `self.policy`.

    Conditioning (what the verbs in sorax/verbs.py build on): `known` latents
    [B, t, h, w, c] (this codec's `encode` of pixels in [-1, 1]) with `given` bool [B, t]: the given
    latent frames are held fixed (t = 0 in the DiT, zero velocity: returned unchanged); the rest
    is generated. `strength` < 1 (SDEdit) starts from `known` noised to t = strength instead of
    pure noise, so 0 returns `known` and 1 ignores it.

    `eta` is how much fresh noise the stochastic `renoise` sampler draws (1 = DDPM's ancestral
    sampler; sorax/diffusion/samplers.py), `eta_late` (t_switch, eta) the eta of the steps below
    t_switch (None: eta all the way; `()` overrides a config's schedule with none), `quiet` the
    number of token frames (latent frames over the temporal patch) on each side of given ones
    that renoise draws no fresh noise for (0: none; verbs.VERB_QUIET), `guide_context` the
    guidance scale toward the given frames (0: none, CFG's null branch sees them too; equal to
    `cfg_scale`: the null branch drops them, at no extra cost; another value: text and context
    guided apart, InstructPix2Pix's two scales, ~1.4x the time), and `guidance_interval`
    the (lo, hi) range of t where CFG applies (both default to the config's `sample` block).
    `guide` (default `sample.guide`): "velocity" mixes the conditional and null velocities;
    "logits" mixes the palette head's per-pixel logits instead (model.palette_head only), so
    the guided clean estimate stays a blend of palette colours (GUIDES in this module).

    `best_of` K > 1 (default `sample.best_of`, else 1) draws K samples per prompt (seeds seed,
    seed + 1, ...: the first is the plain sample) and keeps the one `judge` picks; it costs K
    times the sampling. Text to
    video only: with `known` latents the default is 1 and K > 1 is refused. `judge` (default
    `sample.judge`, else "self"; JUDGES) picks: "self" is the DiT's denoising error, "captioner"
    the learned captioner's log p(prompt | candidate) for prompts it reads (terse world
    captions at its clip size), the DiT's error for the others. Candidate j of prompt i is
    the same sample in any batch: its noise comes from (seed + j, i) alone (other batch sizes
    may round the model's float math differently: the shipped model's log p agreed to 0.002).

    `best_of_stop` (default `sample.best_of_stop`; None: every prompt draws K) makes best of K
    adaptive where the captioner judges: a prompt stops drawing once it has `best_of_min`
    (default `sample.best_of_min`, else 4) candidates and the kept one's log p reaches the
    stop; prompts it cannot read draw `best_of_min`. `report`, a dict, receives per prompt the
    candidates drawn (`draws`) and the kept one's captioner log p (`log_p`, nan where unread).
    `rows` (default 0, 1, ...) are the prompts' positions for the noise: prompts[k] drawn with
    rows[k] = i is prompt i of an earlier, longer list again (to redraw part of a list).

    `time_shift` warps the sampler's times as training warps its t (samplers.schedule; > 1
    spends more steps at high noise); default `sample.time_shift`, else the training warp at
    this size (flow.resolution_shift).
    """
    if self.policy is not None:
      self.policy.enforce_prompts(prompts)
    c = self.cfg
    frames, height, width = frames or c.data.frames, height or c.data.height, width or c.data.width
    steps = steps or c.sample.steps
    cfg_scale = c.sample.cfg if cfg_scale is None else cfg_scale
    sampler = sampler or c.sample.sampler
    samplers.get_sampler(sampler)
    eta = float(c.sample.get("eta", samplers.RENOISE_ETA) if eta is None else eta)
    eta_late = c.sample.get("eta_late", None) if eta_late is None else eta_late
    eta_late = tuple(float(v) for v in eta_late) if eta_late else None
    if eta_late is not None and len(eta_late) != 2:
      raise ValueError(f"eta_late={eta_late} must be (t_switch, eta)")
    interval = tuple(float(v) for v in (guidance_interval or c.sample.get("guidance_interval",
                                                                           (0.0, 1.0))))
    guide = guide or c.sample.get("guide", "velocity")
    if guide not in GUIDES:
      raise ValueError(f"unknown guide {guide!r}; choose from {GUIDES}")
    if guide == "logits" and not c.model.get("palette_head", False):
      raise ValueError("guide='logits' needs a palette head (model.palette_head); this model "
                       "predicts colours directly: use guide='velocity'")
    latent_shape = self.latent_shape(frames, height, width)
    patch = tuple(c.model.patch)
    if not 0.0 <= strength <= 1.0:
      raise ValueError(f"strength={strength} must be in [0, 1]")
    n = len(prompts)
    if known is not None and known.shape != (n,) + latent_shape:
      raise ValueError(f"known latents {known.shape} do not match {n} prompts of latent shape "
                       f"{latent_shape}")
    if given is not None:
      if known is None:
        raise ValueError("given frames need known latents")
      given = np.asarray(given, bool)
      if given.shape != (n, latent_shape[0]):
        raise ValueError(f"given frames {given.shape} must be [{n}, {latent_shape[0]}]")
    if quiet < 0:
      raise ValueError(f"quiet={quiet} must be >= 0")
    guide_context = float(guide_context or 0.0)
    if guide_context < 0:
      raise ValueError(f"guide_context={guide_context} must be >= 0 (0: off)")
    if guide_context and guide_context != cfg_scale and guide == "logits":
      raise ValueError("guide_context at another scale than cfg_scale needs guide='velocity'")
    if strength < 1.0 and known is None:
      raise ValueError("strength < 1 (edit) needs known latents to start from")
    if best_of is None:  # the config's default is for text to video; the verbs take one
      best_of = int(c.sample.get("best_of", 1)) if known is None else 1
    best_of = int(best_of)
    if best_of < 1:
      raise ValueError(f"best_of={best_of} must be a positive integer")
    if best_of > 1 and known is not None:
      raise ValueError("best_of > 1 applies to text-to-video only; the verbs on given frames "
                       "take one sample (best_of=1)")
    if best_of_stop is None:
      best_of_stop = c.sample.get("best_of_stop", None)
    if best_of_min is None:
      best_of_min = c.sample.get("best_of_min", None)
    judge = judge or c.sample.get("judge", "self")
    if judge not in JUDGES:
      raise ValueError(f"unknown judge {judge!r}; choose from {JUDGES}")
    asked = (self._captioned(prompts, frames, height, width)
             if best_of > 1 and judge == "captioner" else [None] * n)
    grid = P.grid_shape(latent_shape, patch)
    n_tok = int(np.prod(grid))
    time_shift = c.sample.get("time_shift", None) if time_shift is None else time_shift
    shift = (flow.resolution_shift(n_tok, c.diffusion.base_tokens, c.diffusion.base_shift)
             if time_shift is None else float(time_shift))
    if not shift > 0:
      raise ValueError(f"time_shift={time_shift} must be > 0")
    conditioned = given is not None and bool(given.any())
    fn = sampling_fn(self.graphdef, latent_shape, patch, steps, float(cfg_scale), sampler,
                      shift, c.diffusion.prediction, conditioned, float(strength),
                      tuple(self.tokenizer.null_tokens), eta, interval, guide, eta_late,
                      int(quiet) if conditioned else 0,
                      guide_context if conditioned else 0.0)
    tok_dim = P.token_dim(latent_shape[-1], patch)
    bs = max(1, min(batch_size, n))
    index = np.arange(n) if rows is None else np.asarray(rows, np.int64)
    if index.shape != (n,) or (n and index.min() < 0):
      raise ValueError(f"rows must be {n} non-negative positions, one per prompt")

    def draw(idx: np.ndarray, s: int, read: bool):
      """Candidate `s` (a seed) of prompts `idx` (indices into `prompts`, at most bs) ->
      (latents [b, ...], uint8 videos [b, T, H, W, 3], captioner log p [b] or None). Prompt i's
      noise comes from row_keys(s, index[i]) alone, so it is the same sample in any batch; the
      batch is padded to a power of two (at most bs) so that few shapes compile."""
      b = len(idx)
      pad = min(bs, 1 << (b - 1).bit_length()) - b
      padded = np.concatenate([idx, np.repeat(idx[-1:], pad)])
      ids, mask = self.tokenizer.encode([prompts[i] for i in padded], c.data.text_len)
      if known is None:
        ktok = jnp.zeros((len(padded), n_tok, tok_dim))
      else:
        ktok, _ = P.patchify_batch(jnp.asarray(known[padded], jnp.float32), patch)
      g = np.zeros((len(padded), latent_shape[0]), bool) if given is None else given[padded]
      keys = row_keys(s, index[padded])
      noise = jax.vmap(lambda k: jax.random.normal(k, (n_tok, tok_dim)))(keys)
      lat = fn(self.params, noise, ids, mask, ktok, cond.token_mask(jnp.asarray(g), grid, patch),
               jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys))
      videos = decode_to_pixels(self.codec, lat, frames)
      lp = (cap_lib.score_videos(self.captioner, videos, [asked[i].objects for i in padded],
                                 walls=[asked[i].wall for i in padded])[:b]
            if read else None)
      return lat[:b], videos[:b], lp

    adaptive = best_of > 1 and best_of_stop is not None and judge == "captioner"
    k_min = min(best_of, 4 if best_of_min is None else int(best_of_min)) if adaptive else best_of
    if k_min < 1:
      raise ValueError(f"best_of_min={best_of_min} must be a positive integer")
    out: list[Any] = [None] * n
    draws, kept_lp = np.zeros(n, np.int64), np.full(n, np.nan)
    read = np.asarray([i for i in range(n) if asked[i] is not None], np.int64)
    unread = np.asarray([i for i in range(n) if asked[i] is None], np.int64)
    # Prompts no captioner reads (all of them at best of 1): a fixed number of candidates (with
    # a stopping rule, the minimum: there is nothing to stop on), the DiT's own pick.
    k = 1 if best_of == 1 else k_min
    for start in range(0, len(unread), bs):
      rows = unread[start:start + bs]
      cands = [draw(rows, seed + j, False) for j in range(k)]
      chosen = np.zeros(len(rows), np.int64)
      if k > 1:
        ids, mask = self.tokenizer.encode([prompts[i] for i in rows], c.data.text_len)
        score = _score_fn(self.graphdef, latent_shape, patch, c.diffusion.prediction)
        skeys = score_keys(seed, index[rows])
        chosen = np.array(rerank.pick(jnp.stack([score(self.params, lat, ids, mask, skeys)
                                                 for lat, _, _ in cands])))
      for r, i in enumerate(rows):
        out[i] = cands[chosen[r]][1][r]
      draws[rows] = k
    # Prompts the captioner reads: candidates in rounds, each kept if the captioner finds it more
    # likely than the best so far (ties: the earlier). With `best_of_stop`, a prompt stops
    # drawing after k_min candidates once its best log p reaches the stop.
    for block in range(0, len(read), 8 * bs):  # bounded memory for long prompt lists
      active = read[block:block + 8 * bs]
      for j in range(best_of):
        if not active.size:
          break
        for start in range(0, len(active), bs):
          rows = active[start:start + bs]
          _, videos, lp = draw(rows, seed + j, True)
          for r, i in enumerate(rows):
            if not lp[r] <= kept_lp[i]:  # also true while kept_lp is nan (nothing kept yet)
              out[i], kept_lp[i] = videos[r], lp[r]
          draws[rows] += 1
        if adaptive and j + 1 >= k_min:
          active = active[kept_lp[active] < best_of_stop]
    if report is not None:
      report.update(draws=draws, log_p=kept_lp)
    return np.stack(out)

  @functools.cached_property
  def captioner(self):
    """The shipped world captioner (sorax/models/captioner.py), loaded on first use."""
    return cap_lib.load()

  def _captioned(self, prompts: Sequence[str], frames: int, height: int,
                 width: int) -> list[Any]:
    """Per prompt, the scene the captioner is asked about (its objects and wall), or None where
    it cannot judge: a prompt that is not a terse world caption, or a clip not of the
    captioner's size."""
    cc = self.captioner.cfg
    if (frames, height, width) != (cc.frames, cc.height, cc.width):
      return [None] * len(prompts)
    out = []
    for p in prompts:
      try:
        out.append(parse_terse(p))
      except ValueError:
        out.append(None)
    return out

  def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
    """The latent [t, h, w, c] of a frames x height x width clip, checked against the patch."""
    patch = tuple(self.cfg.model.patch)
    _, fh, fw = self.codec.factors
    for name, n, f, p in (("height", height, fh, patch[1]), ("width", width, fw, patch[2])):
      if n < 1 or n % (f * p):
        raise ValueError(f"{name}={n} must be a positive multiple of {f * p} for this checkpoint "
                         f"(codec factor {f} x patch {p})")
    if frames < 1:
      raise ValueError(f"frames={frames} must be positive")
    latent_shape = self.codec.latent_shape(frames, height, width)
    if latent_shape[0] % patch[0]:
      raise ValueError(f"frames={frames} gives {latent_shape[0]} latent frames, not a multiple of "
                       f"the temporal patch {patch[0]}")
    return latent_shape

  def encode(self, video: np.ndarray) -> np.ndarray:
    """uint8 video [B, T, H, W, 3] -> this model's latents [B, t, h, w, c] (what `known` takes)."""
    return np.asarray(_encoder(self.codec)(from_pixels(jnp.asarray(video))))


def save_videos(videos: np.ndarray, names: Sequence[str], out: pathlib.Path, *, safety,
                prompts: Sequence[str | None], pipe: Pipeline | None = None, model: str = "",
                gif: bool = False, png: bool = False) -> list[str]:
  """Writes <out>/<name>.mp4 (and .gif / .png) for each uint8 [T, H, W, 3] video through
  `safety` (sorax/safety/guard.py: output checks, watermark, C2PA; atomic per file). The
  manifest names the checkpoint and hashes its config."""
  if pipe is not None:
    model = model or f"sorax-dit@{pipe.step}"
    config = pipe.cfg.to_dict()
  else:
    config = None
  records = safety.write(videos, names, out, prompts=prompts, model=model or "sorax",
                         config=config, gif=gif, png=png)
  return [r["files"][0] for r in records]


@functools.lru_cache(maxsize=1)
def _default_policy():
  from sorax.config import load_file
  from sorax.safety.guard import SAFETY_CONFIG
  from sorax.safety.policy import Policy
  return Policy.from_config(load_file(str(SAFETY_CONFIG)).policy.to_dict())


def decode_to_pixels(codec, latent: jax.Array, frames: int) -> np.ndarray:
  """latent [B, t, h, w, c] -> uint8 [B, frames, H, W, 3]. A VAE decodes chunk by chunk (constant
  memory for any length) and pads to 1 + r*k frames, cropped here."""
  if hasattr(codec, "decode_pieces"):
    pieces = [np.asarray(to_pixels(p)) for p in codec.decode_pieces(latent)]
    return np.concatenate(pieces, axis=1)[:, :frames]
  return np.asarray(to_pixels(_decoder(codec)(latent)))[:, :frames]


@functools.lru_cache(maxsize=8)
def _decoder(codec):
  return jax.jit(codec.decode)


@functools.lru_cache(maxsize=8)
def _encoder(codec):
  return jax.jit(codec.encode)


@functools.lru_cache(maxsize=8)
def _score_fn(graphdef, latent_shape, patch, prediction):
  """-> jitted (params, latent [B, t, h, w, c], ids, mask, keys [B, 2]) -> [B] rerank score:
  the prompted x0 error at rerank.SCORE_TIMES; row b's noise from keys[b] (the same key for
  every candidate of a prompt: score_keys)."""
  pos = P.positions(P.grid_shape(latent_shape, patch))
  times = jnp.asarray(rerank.SCORE_TIMES, jnp.float32)

  @jax.jit
  def run(params, latent, ids, mask, keys):
    model = nnx.merge(graphdef, params)
    x0, _ = P.patchify_batch(latent, patch)
    positions = jnp.broadcast_to(pos, (x0.shape[0],) + pos.shape)
    text = model.encode_text(ids, mask)
    self_cond = model.dit.cfg.self_cond

    def x0_fn(x_t, t):
      prev = None
      if self_cond:  # as the sampler does: the model's own first estimate
        prev = x_t - t[:, None, None] * flow.to_velocity(
            model.dit(x_t, positions, t, text, mask), x_t, t, prediction)
      v = flow.to_velocity(model.dit(x_t, positions, t, text, mask, x0_prev=prev), x_t, t,
                           prediction)
      return x_t - t[:, None, None] * v

    noise = jax.vmap(lambda k: jax.random.normal(
        k, (rerank.SCORE_DRAWS, times.shape[0]) + x0.shape[1:]))(keys)  # [B, D, T, N, P]
    noise = jnp.moveaxis(noise, 0, 2)  # [D, T, B, N, P]
    return rerank.denoise_error(x0_fn, x0, noise, times)

  return run


def row_keys(seed: int, rows) -> jax.Array:
  """One PRNG key per prompt position, [len(rows), 2]: fold_in(PRNGKey(seed), row). A sample's
  noise comes from its own key alone, so it does not depend on the batch it is drawn in."""
  return jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(
      jnp.asarray(rows, jnp.uint32))


def score_keys(seed: int, rows) -> jax.Array:
  """The self judge's noise keys [len(rows), 2] for prompts `rows` (indices into the prompt
  list): the same for every candidate of a prompt, and independent of the batch."""
  return jax.vmap(lambda k: jax.random.fold_in(k, 2))(row_keys(seed, rows))
