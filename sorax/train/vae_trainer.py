"""Training the causal video VAE (`kind = "vae"` configs, e.g. experiments/vae_world.py).

    sorax train --config experiments/vae_world.py --workdir runs/vae_world
"""

from __future__ import annotations

import jax
import ml_collections
from absl import logging
from flax import nnx

from sorax.data.pipeline import world_dataset
from sorax.models.discriminator import VAEGAN
from sorax.models.vae import VAE, VAEConfig
from sorax.train import state as state_lib
from sorax.train.trainer import BaseTrainer
from sorax.train.vae_step import VAELossConfig, make_vae_train_step


def vae_config(cfg: ml_collections.ConfigDict) -> VAEConfig:
  v = cfg.vae
  return VAEConfig(latent_channels=v.latent_channels, patch=v.patch, widths=tuple(v.widths),
                   spatial_down=tuple(v.spatial_down), temporal_down=tuple(v.temporal_down),
                   blocks=v.blocks, dtype=v.dtype, param_dtype=v.param_dtype,
                   encoder_widths=tuple(v.encoder_widths) if v.get("encoder_widths") else None,
                   refine=v.get("refine", 0))


def loss_config(cfg: ml_collections.ConfigDict) -> VAELossConfig:
  lo = cfg.loss
  if lo.perceptual > 0:
    # Visible gap, not a silent no-op: LPIPS needs pretrained VGG/I3D weights we cannot fetch
    # here (BUILD_NOTES.md).
    raise ValueError("loss.perceptual > 0 is not supported yet (no pretrained perceptual network "
                     "is available to sorax); use loss.adversarial for sharpness")
  crop = tuple(lo.crop) if lo.crop else None
  return VAELossConfig(l1=lo.l1, l2=lo.l2, kl=lo.kl, crop=crop, ema_decay=cfg.optim.ema_decay,
                       adversarial=lo.adversarial, adversarial_start=lo.adversarial_start)


def make_model_fn(cfg: ml_collections.ConfigDict, seed: int = 0):
  """The module a VAE run trains: the VAE, or VAE + discriminator when loss.adversarial > 0."""
  vcfg = vae_config(cfg)
  if cfg.loss.adversarial > 0:
    widths = tuple(cfg.loss.disc_widths)
    return lambda: VAEGAN(vcfg, widths, rngs=nnx.Rngs(seed))
  return lambda: VAE(vcfg, rngs=nnx.Rngs(seed))


class VAETrainer(BaseTrainer):

  def init_state(self):
    graphdef, state, shardings = state_lib.init_model_state(
        make_model_fn(self.cfg, self.cfg.seed), self.cfg.seed, self.mesh, self.rules, self.tx)
    src = self.cfg.train.get("init_from")
    if src and not (self.workdir / "checkpoints").is_dir():  # a fresh run, not a resume
      from sorax.models.vae_codec import load_vae
      codec = load_vae(src)
      weights = nnx.to_pure_dict(codec.params)
      if self.cfg.loss.adversarial > 0:  # a VAEGAN: the VAE's weights sit under "vae"
        weights = {"vae": weights}
      state, copied, fresh, unused = state_lib.warm_start(state, weights)
      if unused:  # the source is another architecture, not this one minus new parts
        raise ValueError(f"train.init_from={src!r}: {len(unused)} of its weights have no place "
                         f"of the same shape in this VAE (e.g. {', '.join(unused[:3])})")
      logging.info("warm start from %s: %d weights copied, %d fresh (%s)", codec.source,
                   len(copied), len(fresh), ", ".join(fresh[:8]))
    return graphdef, state, shardings

  def make_data(self):
    return iter(world_dataset(self.cfg.data, None, shard_index=jax.process_index(),
                              shard_count=jax.process_count()))

  def make_step(self):
    return make_vae_train_step(self.graphdef, self.tx, loss_config(self.cfg),
                               vae_config(self.cfg).temporal)

  def batch_ndims(self) -> dict[str, int]:
    return {"video": 5}
