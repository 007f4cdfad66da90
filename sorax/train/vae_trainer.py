"""Training the causal video VAE (`kind = "vae"` configs, e.g. experiments/vae_world.py).

    sorax train --config experiments/vae_world.py --workdir runs/vae_world
"""

from __future__ import annotations

import ml_collections
import jax
from flax import nnx

from sorax.data.pipeline import world_dataset
from sorax.models.vae import VAE, VAEConfig
from sorax.train import state as state_lib
from sorax.train.trainer import BaseTrainer
from sorax.train.vae_step import VAELossConfig, make_vae_train_step


def vae_config(cfg: ml_collections.ConfigDict) -> VAEConfig:
  v = cfg.vae
  return VAEConfig(latent_channels=v.latent_channels, patch=v.patch, widths=tuple(v.widths),
                   spatial_down=tuple(v.spatial_down), temporal_down=tuple(v.temporal_down),
                   blocks=v.blocks, dtype=v.dtype, param_dtype=v.param_dtype)


def loss_config(cfg: ml_collections.ConfigDict) -> VAELossConfig:
  lo = cfg.loss
  if lo.adversarial > 0 or lo.perceptual > 0:
    # Visible gap, not a silent no-op: these terms are not built yet (BUILD_NOTES.md).
    raise NotImplementedError("loss.adversarial / loss.perceptual > 0: not implemented yet; the "
                              "world VAE reaches its targets with L1 + L2 + KL")
  crop = tuple(lo.crop) if lo.crop else None
  return VAELossConfig(l1=lo.l1, l2=lo.l2, kl=lo.kl, crop=crop, ema_decay=cfg.optim.ema_decay)


class VAETrainer(BaseTrainer):

  def init_state(self):
    vcfg = vae_config(self.cfg)
    return state_lib.init_model_state(lambda: VAE(vcfg, rngs=nnx.Rngs(self.cfg.seed)),
                                      self.cfg.seed, self.mesh, self.rules, self.tx)

  def make_data(self):
    return iter(world_dataset(self.cfg.data, None, shard_index=jax.process_index(),
                              shard_count=jax.process_count()))

  def make_step(self):
    return make_vae_train_step(self.graphdef, self.tx, loss_config(self.cfg),
                               vae_config(self.cfg).temporal)

  def batch_ndims(self) -> dict[str, int]:
    return {"video": 5}
