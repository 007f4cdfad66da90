"""How good is a VAE on the world: reconstruction PSNR, the oracle on reconstructions, a figure.

    sorax eval-vae --checkpoint runs/vae_world --out runs/vae_world/eval

Held-out clips are drawn with the same held-out seed as the DiT evaluation (never trained on).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from sorax.data import oracle, world
from sorax.data.video_write import write_png
from sorax.evaluate import heldout_specs, json_safe
from sorax.models import vae as vae_lib
from sorax.models.codec import from_pixels, to_pixels
from sorax.models.vae_codec import VAECodec, load_vae


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
  """PSNR in dB between uint8 videos (peak 255); inf when identical."""
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def reconstruct(codec: VAECodec, videos: np.ndarray, batch_size: int = 8,
                progress: bool = False) -> np.ndarray:
  """uint8 [N, T, H, W, 3] -> the VAE's uint8 reconstructions (posterior mean, whole video)."""
  t = videos.shape[1]

  @jax.jit
  def run(v):
    return to_pixels(codec.decode(codec.encode(from_pixels(v)))[:, :t])

  out = [np.asarray(run(videos[i:i + batch_size]))
         for i in tqdm(range(0, len(videos), batch_size), disable=not progress, desc="recon")]
  return np.concatenate(out)


def figure(videos: np.ndarray, recons: np.ndarray, *, rows: int = 4, cols: int = 6,
           gap: int = 2) -> np.ndarray:
  """uint8 image: for each of `rows` clips, a row of ground-truth frames over a row of
  reconstructions, `cols` frames evenly spaced in time."""
  n, t, h, w, _ = videos.shape
  rows = min(rows, n)
  idx = np.linspace(0, t - 1, min(cols, t)).round().astype(int)
  img = np.full((rows * (2 * h + 3 * gap), len(idx) * (w + gap), 3), 255, np.uint8)
  for r in range(rows):
    for c, f in enumerate(idx):
      y, x = r * (2 * h + 3 * gap), c * (w + gap)
      img[y:y + h, x:x + w] = videos[r, f]
      img[y + h + gap:y + 2 * h + gap, x:x + w] = recons[r, f]
  return img


def evaluate_vae(path: str | pathlib.Path = "", *, num_clips: int = 64, height: int = 64,
                 width: int = 64, frames: int = 17, out: str | pathlib.Path | None = None,
                 batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
  """-> {"psnr" (mean over clips), "psnr_global", "oracle" rates on reconstructions,
  "oracle_truth" on the originals, "chunked_max_diff", ...}; writes recon.png and
  scores.json under `out`."""
  codec = load_vae(str(path))
  specs = heldout_specs(num_clips, height, width, frames)
  videos = np.stack([world.render(s, height, width, frames) for s in specs])
  recons = reconstruct(codec, videos, batch_size, progress)
  per_clip = [psnr_uint8(v, r) for v, r in zip(videos, recons)]
  rates = json_safe(oracle.score_videos(list(recons), specs))
  truth = json_safe(oracle.score_videos(list(videos), specs))
  # The constant-memory path on one clip: chunked encode + decode vs the whole-video call.
  model = nnx.merge(codec.graphdef, codec.params)
  x = vae_lib.pad_frames(from_pixels(videos[:1]), codec.cfg.temporal)
  z = model.encode(x)
  zc = jnp.concatenate(list(vae_lib.encode_chunked(model, x)), axis=1)
  yc = jnp.concatenate(list(vae_lib.decode_chunked(model, zc)), axis=1)
  y = model.decode(z)[0]
  summary = {
      "vae": codec.source, "clips": num_clips, "size": [frames, height, width],
      "factors": list(codec.factors), "latent_channels": codec.channels,
      "psnr": float(np.mean(per_clip)), "psnr_min": float(np.min(per_clip)),
      "psnr_global": psnr_uint8(videos, recons),
      "oracle": rates, "oracle_truth": truth,
      "chunked_max_diff": float(max(jnp.abs(zc - z).max(), jnp.abs(yc - y).max())),
  }
  if out is not None:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_png(out / "recon.png", figure(videos, recons))
    tmp = out / "scores.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "scores.json")
    summary["figure"] = str(out / "recon.png")
  return summary
