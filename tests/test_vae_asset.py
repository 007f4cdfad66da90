"""The shipped world VAE (sorax/assets/vae_world.msgpack): loads, and its quality does not regress.

The issue's targets are 35 dB PSNR and 98% oracle all-right on reconstructions at 64x64; the
shipped weights (a CPU-trained run, BUILD_NOTES.md) do not reach them yet. These floors pin what
they do reach, so a change that makes them worse fails here.
"""

import numpy as np
import pytest

from sorax.data import world
from sorax.evaluate import heldout_specs
from sorax.models import vae_codec
from sorax.vae_eval import psnr_uint8, reconstruct

# Measured on these 4 clips for the shipped file (BUILD_NOTES.md), less 0.5 dB of slack.
PSNR_MEASURED = 32.74
PSNR_FLOOR = PSNR_MEASURED - 0.5


@pytest.fixture(scope="module")
def codec():
  if not vae_codec.DEFAULT_VAE.exists():
    pytest.fail(f"the shipped VAE {vae_codec.DEFAULT_VAE} is missing")
  return vae_codec.load_vae("")


def test_shipped_vae_shape(codec):
  assert codec.factors == (2, 4, 4) and codec.channels == 16
  assert codec.latent_shape(17, 64, 64) == (9, 16, 16, 16)


def test_shipped_vae_reconstructs_held_out_clips(codec):
  specs = heldout_specs(4, 64, 64, 17)
  videos = np.stack([world.render(s, 64, 64, 17) for s in specs])
  recons = reconstruct(codec, videos, batch_size=4)
  assert recons.shape == videos.shape and recons.dtype == np.uint8
  psnr = psnr_uint8(videos, recons)
  assert psnr >= PSNR_FLOOR, f"shipped VAE reconstructs at {psnr:.2f} dB < {PSNR_FLOOR}"
  # The oracle still reads every attribute of these clips off the reconstructions.
  from sorax.data import oracle
  assert oracle.score_videos(list(recons), specs)["all_right"] == 1.0
