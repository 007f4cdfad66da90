"""The causal video VAE on the built-in world (../shared/WORLD.md).

Variants (`arg`):
  world  (default) 4x spatial, 2x temporal, 16 latent channels, a full-resolution refine head;
         trained on random 32x32 crops of 64x64 clips, evaluated on whole 64x64 clips (the VAE
         is fully convolutional). The shipped sorax/assets/vae_world.msgpack is this shape
         (how it was trained: BUILD_NOTES.md).
  tiny   a few-second smoke test (tests/test_vae.py)
  video  the general-purpose shape of the issue: 8x spatial, 4x temporal, 16 channels (a GPU/TPU run)

Run:
  sorax train --config experiments/vae_world.py --workdir runs/vae_world
  sorax eval-vae --checkpoint runs/vae_world
"""

import ml_collections

VARIANTS = ("world", "tiny", "video")

# Convolutions are small: data parallel over batch, params replicated (or FSDP over conv_out on a
# pod by mapping conv_out -> fsdp).
VAE_RULES = [
    ["act_batch", ["data", "fsdp"]],
    ["conv_t", None],
    ["conv_h", None],
    ["conv_w", None],
    ["conv_in", None],
    ["conv_out", None],
]


def get_config(arg: str = "world") -> ml_collections.ConfigDict:
  variant = arg or "world"
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r} of experiments/vae_world.py; choose from "
                     f"{VARIANTS}")
  c = ml_collections.ConfigDict()
  c.kind = "vae"
  c.variant = variant
  c.seed = 0

  # Clip lengths 1 + 2k: the causal VAE encodes frame 0 alone, then pairs of frames.
  c.data = ml_collections.ConfigDict(dict(
      height=64, width=64, frames=9, max_objects=3, wall_prob=0.25, num_clips=10_000_000,
      caption_levels=["terse"], caption_weights=[1.0], text_len=0, batch_size=8, seed=0,
      worker_count=0))

  # encoder_widths: a lighter encoder than decoder ([] = the same widths). The DiT encodes
  # every training batch through it; sampling only decodes.
  c.vae = ml_collections.ConfigDict(dict(
      latent_channels=16, patch=4, widths=[64, 128], encoder_widths=[48, 96],
      spatial_down=[False], temporal_down=[True], blocks=1, refine=16, dtype="float32",
      param_dtype="float32"))

  c.loss = ml_collections.ConfigDict(dict(
      l1=1.0, l2=1.0, kl=1e-6, crop=[32, 32],
      # adversarial > 0 adds a hinge 3D PatchGAN (sorax/models/discriminator.py) after
      # adversarial_start steps; perceptual (LPIPS) is not available (no pretrained weights).
      adversarial=0.0, adversarial_start=0, disc_widths=[32, 64, 128], perceptual=0.0))

  c.optim = ml_collections.ConfigDict(dict(
      lr=5e-4, warmup_steps=100, end_lr_frac=0.05, weight_decay=0.0, b1=0.9, b2=0.99,
      grad_clip=1.0, ema_decay=0.999))

  # init_from: a VAE workdir or .msgpack whose weights start this run where shapes match (a
  # fresh optimizer; new parts, e.g. a refine head, keep their init).
  c.train = ml_collections.ConfigDict(dict(
      steps=4000, log_every=50, checkpoint_every=500, keep=2, async_checkpoint=True,
      init_from=""))

  c.eval = ml_collections.ConfigDict(dict(num_clips=64, height=64, width=64, frames=17))

  c.mesh = ml_collections.ConfigDict(dict(
      shape=ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1, sequence=1)),
      rules=VAE_RULES))

  if variant == "tiny":
    c.data.update(height=16, width=16, frames=5, batch_size=8)
    c.vae.update(latent_channels=4, widths=[8, 16], encoder_widths=[8, 8], blocks=1, refine=0)
    c.loss.crop = None
    c.train.update(steps=4, log_every=2, checkpoint_every=2, async_checkpoint=False)
    c.eval.update(num_clips=2, height=16, width=16, frames=5)
  elif variant == "video":
    c.data.update(height=256, width=256, frames=17, batch_size=16)
    c.vae.update(latent_channels=16, patch=1, widths=[128, 256, 512, 512], encoder_widths=[],
                 refine=0,
                 spatial_down=[True, True, True], temporal_down=[False, True, True],
                 dtype="bfloat16")
    c.loss.crop = [128, 128]
    c.train.update(steps=100_000, checkpoint_every=2000)
    c.optim.lr = 1e-4
    c.eval.update(height=256, width=256)
  return c
