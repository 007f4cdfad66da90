"""Text-to-video on the built-in procedural world (../shared/WORLD.md).

Variants (`arg`):
  demo   tiny model, 32x32x9 clips through the shipped world VAE, a few minutes on a 2-core CPU
         (what `sorax demo` runs)
  small  the same data, a larger model and longer schedule (a longer CPU run)
  base   64x64x17 clips, a GPU/TPU-sized model (bf16, cuDNN attention)
  world32  32x32x17 clips as pixel tokens (lossless causal space-to-depth: frame 0, then frame
         pairs; 1x2x2 patches -> 9x4x4 = 144 tokens of 2x8x8 pixels): the speedrun recipe
         (benchmarks/speedrun.py)
  finetune  world32 with the shipped checkpoint's model and losses, starting from its weights
         (train.init_from) with a held lr and a full-decay EMA: the shipped model trained further

Run:
  sorax train --config experiments/world.py:demo --workdir runs/demo
  sorax train --config experiments/world.py:small --workdir runs/small --config.train.steps=20000
  sorax train --config experiments/world.py:finetune --workdir runs/ft
"""

import ml_collections

from sorax.data.captions import SLOT_GROUPS
from sorax.data.spec import BACKGROUNDS, OBJECT_COLORS, WALL_COLOR
from sorax.models.weights import SHIPPED

# Every colour a world pixel can have: the objects', the backgrounds' and the wall's.
WORLD_PALETTE = (*OBJECT_COLORS.values(), *BACKGROUNDS.values(), WALL_COLOR)

VARIANTS = ("demo", "small", "base", "world32", "finetune")

# Logical axis -> mesh axis. Parameters are FSDP-sharded over `embed` and tensor-parallel over
# heads/mlp; activations are split over batch (data x fsdp), heads/mlp (tensor) and the token
# sequence (sequence).
DIT_RULES = [
    ["act_batch", ["data", "fsdp"]],
    ["act_length", "sequence"],
    ["act_kv_length", None],
    ["act_embed", None],
    ["act_heads", "tensor"],
    ["act_kv", None],
    ["act_mlp", "tensor"],
    ["layers", None],
    ["embed", "fsdp"],
    ["mlp", "tensor"],
    ["heads", "tensor"],
    ["kv", None],
    ["vocab", "tensor"],
    ["text_embed", None],
    ["patch", None],
    ["freq", None],
]


def get_config(arg: str = "demo") -> ml_collections.ConfigDict:
  variant = arg or "demo"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of experiments/world.py; choose from {VARIANTS}")
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.seed = 0

  c.data = ml_collections.ConfigDict(dict(
      # 9 = 1 + 2*4 frames: the causal VAE's frame 0, then 4 pairs -> 5 latent frames.
      height=32, width=32, frames=9, max_objects=3, wall_prob=0.25, num_clips=10_000_000,
      caption_levels=["terse", "descriptive", "alt"], caption_weights=[0.5, 0.35, 0.15],
      text_len=80, batch_size=16, seed=0, worker_count=0,
      latent_cache="",
      # Joint image training: per clip, this many single frames also denoised as T = 1 videos
      # (rendered video only), weighted image_weight in the loss.
      images_per_clip=0, image_weight=0.5))  # a `sorax cache-latents` folder: train on its latents, not rendered clips

  # name: "vae" (the learned causal VAE; checkpoint "" = the shipped world VAE, else a .msgpack
  # file or a VAE training workdir; stats_clips clips measure its latent mean/std) or
  # "space_to_depth" (lossless pixel-unshuffle by temporal/spatial, times scale).
  c.codec = ml_collections.ConfigDict(dict(
      name="vae", checkpoint="", stats_clips=64, temporal=1, spatial=4, scale=1.5, causal=False))

  c.model = ml_collections.ConfigDict(dict(
      patch=[1, 2, 2], width=128, depth=4, heads=4, mlp_ratio=4.0, qk_norm=True,
      text_width=128, text_depth=2, text_heads=4, dtype="float32", param_dtype="float32",
      attention="auto", scan_layers=True, remat="none",
      # > 0: a per-token MLP of this width added to the linear output head (models/dit.py).
      head_hidden=0,
      # True: absolute position features (canvas fractions, frame index) added to the tokens
      # beside RoPE, through a zero-initialised projection (models/dit.py, layers.position_features).
      abs_pos=False,
      # True: the masked mean of the text tokens joins the timestep embedding that drives every
      # block's adaLN, through a zero-initialised projection (models/dit.py).
      pooled_text=False,
      # "sorax": our small text encoder, trained with the DiT; "minilm": the pretrained
      # all-MiniLM-L6-v2 with its own tokenizer, frozen (text_width becomes its 384).
      text_encoder="sorax",
      # > 0: attribute slots (models/dit.py SlotReader): learned queries read the caption, one
      # per object it may name and one for the scene; they join the text keys and drive the
      # adaLN. slot_classes: the attribute heads' sizes (sorax.data.captions.SLOT_GROUPS), read
      # by the slot loss (diffusion.slot_weight).
      slots=0, slot_depth=2, slot_classes=[n for _, n in SLOT_GROUPS],
      # True: the palette head (models/dit.py): every pixel's colour as a distribution over
      # `palette` (the world's 13 colours, WORLD.md), its expectation the x0-prediction; with
      # diffusion.palette_weight the true colour's cross-entropy joins the loss. Pixel codec only.
      palette_head=False, palette=[list(c) for c in WORLD_PALETTE],
      # True: self-conditioning (models/dit.py): the DiT also reads its previous clean estimate
      # (diffusion.self_cond_rate of training steps feed one; samplers pass the last step's).
      self_cond=False))
  c.tokenizer = ""  # empty: the shipped sorax/assets/world_sp.model

  c.diffusion = ml_collections.ConfigDict(dict(
      # Pixel tokens (space_to_depth) are wider than the model: predict x0 and bias t towards
      # noise (logit-normal mean +0.8, std 0.8: JiT's P_mean=-0.8 in our t=1-is-noise
      # convention). With t_mean=0 backgrounds/walls were ignored (BUILD_NOTES.md).
      t_mean=0.8, t_std=0.8, base_shift=1.0, base_tokens=128, text_dropout=0.1,
      prediction="x0",
      # Loss weight of object pixels is 1 + object_weight (pixel codecs only; the world's
      # objects are a few percent of the pixels, and they are what a prompt asks for).
      object_weight=0.0,
      # Loss weight, minus 1, of pixels that change from a frame to its neighbour (where the
      # motion is drawn; sorax/train/step.py motion_mask). Same needs as object_weight.
      motion_weight=0.0,
      # Weight of the text encoder's auxiliary loss: every output token reads back as its own
      # input word (sorax/train/step.py text_identity_loss), so no word the DiT needs fades.
      text_id_weight=0.0,
      # Weight of the slot loss: each attribute slot must name what the caption states of its
      # object (colour, shape, size, motion) or of the scene (sorax/train/step.py slot_loss).
      slot_weight=0.0,
      # Weight of the palette head's per-pixel cross-entropy (model.palette_head).
      palette_weight=0.0,
      # Weight of the track loss: each object colour's centre per frame, read from the palette
      # head, against the true centre (sorax/train/step.py track_loss). Needs palette_weight.
      track_weight=0.0,
      # Loss weight, minus 1, of the made frames next to given ones (masked conditioning): the
      # seam an extension, fill or connection must cross without a jump. Needs conditioning.
      seam_weight=0.0,
      # Ghost copies (sorax/train/ghosts.py): the share of clips whose noised input also holds a
      # shifted copy of their objects (strength U(0, ghost_alpha), shift <= ghost_shift px),
      # the target staying the clean clip: teaches the model to drop a copy it drew itself.
      ghost_rate=0.0, ghost_alpha=0.6, ghost_shift=8,
      # Share of training steps that feed the model its own clean estimate (model.self_cond).
      self_cond_rate=0.5))

  # Masked conditioning (sorax/diffusion/conditioning.py): the rate at which a training clip
  # draws each mode of given frames (normalized). Only "none": text-to-video alone. The shipped
  # world checkpoint mixes them in so one model serves every verb (animate, extend, fill, ...).
  c.conditioning = ml_collections.ConfigDict(dict(
      none=1.0, first=0.0, last=0.0, prefix=0.0, suffix=0.0, first_last=0.0, ends=0.0,
      scattered=0.0))

  c.optim = ml_collections.ConfigDict(dict(
      lr=1e-3, warmup_steps=100, end_lr_frac=0.05, weight_decay=0.01, b1=0.9, b2=0.99,
      grad_clip=1.0, ema_decay=0.995,
      # "adamw", or "muon" (hidden matrices orthogonalized, the rest AdamW at adam_lr_ratio x lr).
      name="adamw", adam_lr_ratio=1.0,
      # "cosine" (to end_lr_frac at train.steps) or "constant" after the warmup.
      schedule="cosine",
      # Steps at lr 0 before the warmup (Adam's moments fill first; for warm starts), and
      # whether the EMA's decay ramps up from step 0 (False for warm starts: their EMA starts
      # as the loaded weights).
      hold_steps=0, ema_warmup=True))

  c.train = ml_collections.ConfigDict(dict(
      steps=1500, log_every=25, checkpoint_every=500, keep=2, async_checkpoint=True,
      # A weights file (.safetensors) or workdir whose weights start this run (fresh optimizer
      # and schedule): how the shipped checkpoint is trained on over several runs.
      init_from="",
      # Weights this model has and init_from lacks (e.g. model.head_hidden added to a trained
      # model) keep their fresh init instead of being an error.
      init_allow_fresh=False,
      # init_from has fewer DiT blocks than model.depth: its blocks become the first ones and
      # the added blocks start as the identity (sorax/train/state.py warm_start).
      init_grow_depth=False))

  c.mesh = ml_collections.ConfigDict(dict(
      shape=ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, sequence=1)),
      # Multi-slice: how much of each axis spans slices (over DCN); all 1 = one slice.
      dcn_shape=ml_collections.ConfigDict(dict(data=1, fsdp=1, tensor=1, sequence=1)),
      rules=DIT_RULES))

  # renoise with eta 2 (twice DDPM's fresh noise) and CFG 2.5: +0.14 all-right over Heun 24 at
  # CFG 2 on v16 at the same 48 model calls (BUILD_NOTES, "The sampler was the lever"; of CFG
  # 1.5-3 and eta 0.5-100), +0.03 more at 96 steps (192: no better). The ODE samplers were best
  # at CFG 2.
  # guide: "velocity" (CFG on the velocities) or "logits" (on the palette head's per-pixel
  # logits; sorax/sample.py GUIDES).
  # judge: who picks among best_of K: "self" (the DiT's own denoising error) or "captioner"
  # (the learned world captioner, sorax/models/captioner.py; terse world captions only).
  # best_of K > 1: K samples a prompt, the one the model explains best is kept (K x the
  # sampling time; sorax/diffusion/rerank.py). best_of_stop L (with the captioner judging,
  # optional): a prompt stops drawing once it has best_of_min (default 4) and the kept one's
  # log p reaches L, so K is the most a prompt may cost.
  c.sample = ml_collections.ConfigDict(dict(steps=96, sampler="renoise", eta=2.0, cfg=2.5,
                                            seed=0, guide="velocity", best_of=1,
                                            judge="self"))

  if variant == "demo":
    # Minutes on 2 CPU cores: 1x2x2 patches of the 5x8x8x16 VAE latent (80 tokens a clip),
    # mostly terse captions, and a short text context; the larger variants train on every
    # caption level at full length.
    c.data.update(caption_weights=[0.7, 0.2, 0.1], text_len=48)
    c.diffusion.base_tokens = 80
  elif variant == "small":
    c.model.update(width=192, depth=6, heads=6)
    c.data.update(batch_size=32, text_len=160)
    c.train.steps = 20_000
    c.train.checkpoint_every = 2000
    c.optim.update(lr=6e-4, warmup_steps=500, ema_decay=0.999)
  elif variant in ("world32", "finetune"):
    c.data.update(frames=17, text_len=48)
    # Best of up to 16 by the learned world captioner, stopping once it is sure (log p >= -3
    # after at least 4): +0.06 all-right over a fixed best of 8 at 1.1x its cost, +0.25 over
    # one sample, on 256 fresh held-out prompts (BUILD_NOTES, "Best of K that stops when the
    # judge is sure"); `--best-of 1` is ~9x faster.
    c.sample.update(best_of=16, judge="captioner", best_of_stop=-3.0, best_of_min=4)
    c.codec.update(name="space_to_depth", temporal=2, spatial=4, causal=True)
    c.diffusion.base_tokens = 144
    if variant == "finetune":
      _shipped_recipe(c)
  elif variant == "base":
    c.data.update(height=64, width=64, frames=17, batch_size=64, text_len=160)
    c.model.update(width=512, depth=12, heads=8, text_width=256, text_depth=4,
                   dtype="bfloat16", attention="auto", remat="dots")
    c.diffusion.base_tokens = 576  # 9x16x16 latent in 1x2x2 patches
    c.train.steps = 50_000
    c.train.checkpoint_every = 2000
    c.optim.update(lr=3e-4, warmup_steps=1000, ema_decay=0.9999)
  return c


def _shipped_recipe(c: ml_collections.ConfigDict) -> None:
  """The shipped checkpoint's model and losses (its metadata's config, BUILD_NOTES "The shipped
  checkpoint"), warm-started from it the way that keeps its quality best measured so far."""
  c.model.update(depth=8, palette_head=True, pooled_text=True, slots=4)
  c.data.caption_weights = [1.0, 0.0, 0.0]
  c.diffusion.update(ghost_rate=0.5, motion_weight=4.0, object_weight=1.0, palette_weight=1.0,
                     slot_weight=0.1, text_id_weight=0.1)
  c.conditioning.update(none=0.65, first=0.1, prefix=0.08, suffix=0.05, ends=0.04,
                        first_last=0.04, scattered=0.04)
  # v16 ended its cosine at 1e-5; a fresh optimizer at 5e-5 lost 0.04 all-right in 1,000 steps
  # (BUILD_NOTES, "A 1,000-step probe"). Hence a low peak, lr 0 while Adam's moments fill, and
  # an EMA at its full decay from the loaded weights.
  c.optim.update(lr=2e-5, warmup_steps=100, end_lr_frac=0.25, ema_decay=0.999, hold_steps=200,
                 ema_warmup=False)
  c.train.update(steps=2400, checkpoint_every=250, keep=10,
                 init_from=str(SHIPPED))
