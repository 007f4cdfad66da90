"""The training step's auxiliary losses and options: object and motion weights, the text
identity loss, attribute slots, the palette head, Muon, self-conditioning (split from
tests/test_train.py so that pytest-xdist's two workers share the compile-bound training tests)."""

import dataclasses

import jax
import numpy as np
import pytest

from sorax import config as config_lib
from sorax.sample import Pipeline
from sorax.train.trainer import Trainer
from tests.test_config import WORLD
from tests.test_train import tiny


def test_object_and_motion_weights_change_the_loss(tmp_path):
  """The same first batch and key: with object and motion weights the loss changes (so they are
  wired into the step; loss_weight's test says what each one weighs), and stays finite."""
  losses = _first_losses(tmp_path, {"plain": [], "weighted": [
      "--config.diffusion.object_weight=4", "--config.diffusion.motion_weight=4"]})
  assert all(np.isfinite(v) for v in losses.values()), losses
  assert losses["weighted"] != losses["plain"], losses


def test_loss_weight_adds_each_weight_on_its_own_pixels():
  """1 on a still background pixel, + object_weight on an object pixel, + motion_weight where
  the pixel changes between frames; each weight alone moves only its own pixels."""
  import jax.numpy as jnp
  from sorax.train.step import loss_weight
  video = np.zeros((1, 2, 4, 4, 3), np.uint8)
  video[..., :] = (12, 12, 12)  # black background
  video[0, :, 0, 0] = (220, 40, 40)  # a still red object pixel
  video[0, 1, 3, 3] = (220, 40, 40)  # a red pixel that appears in frame 1
  w = np.asarray(loss_weight(jnp.asarray(video), 2.0, 5.0))
  assert w.shape == (1, 2, 4, 4)
  assert w[0, 0, 1, 1] == 1.0 and w[0, 0, 0, 0] == 3.0  # background; still object
  assert w[0, 1, 3, 3] == 8.0 and w[0, 0, 3, 3] == 6.0  # moving object; background it leaves
  np.testing.assert_array_equal(np.asarray(loss_weight(jnp.asarray(video), 0.0, 0.0)), 1.0)
  only_obj = np.asarray(loss_weight(jnp.asarray(video), 2.0, 0.0))
  assert only_obj[0, 0, 3, 3] == 1.0 and only_obj[0, 1, 3, 3] == 3.0


@pytest.mark.slow  # an option the shipped recipe does not use; run by benchmarks/slow_tests.py
def test_joint_image_training_changes_the_loss(tmp_path):
  losses = _first_losses(tmp_path, {"plain": [], "img": ["--config.data.images_per_clip=2"]})
  assert all(np.isfinite(v) for v in losses.values()) and losses["img"] != losses["plain"], losses


def _fit_one_batch_and_save(tr: Trainer, steps: int = 30) -> list[float]:
  """`steps` steps on the trainer's first batch, then a saved checkpoint; -> the losses."""
  batch = next(tr.data)
  losses = [float(tr.train_step(batch)["loss"]) for _ in range(steps)]
  tr.save()
  tr.ckpt.wait()
  tr.close()
  return losses


def _first_losses(tmp_path, variants: dict[str, list[str]]) -> dict[str, float]:
  """The first step's loss of each variant (the same first batch and key)."""
  losses = {}
  for name, extra in variants.items():
    tr = Trainer(tiny("--config.train.steps=2", *extra), tmp_path / name)
    losses[name] = float(tr.train_step(next(tr.data))["loss"])
    tr.close()
  return losses


def test_object_weight_needs_a_pixel_codec():
  from sorax.train.step import StepConfig, make_train_step
  cfg = StepConfig(patch=(1, 2, 2), t_mean=0.0, t_std=1.0, shift=1.0, text_dropout=0.0,
                   ema_decay=0.9, object_weight=4.0)
  with pytest.raises(ValueError, match="object_weight/motion_weight need a pixel-aligned codec"):
    make_train_step(None, None, lambda x: x, cfg, fold=None)  # e.g. the VAE: no fold
  with pytest.raises(ValueError, match="need a pixel-aligned codec"):
    make_train_step(None, None, lambda x: x, dataclasses.replace(cfg, object_weight=0.0,
                                                                 motion_weight=2.0), fold=None)


def test_text_identity_loss_reads_words_back():
  """Low when every output row points at its own word's embedding; log(V) when all outputs are
  one vector (the collapse it guards against); padding does not count."""
  from sorax.train.step import text_identity_loss
  table = 8.0 * np.eye(6, 4, dtype=np.float32)[:, :4]  # 6 words, 4 dims; words 4, 5 are zero
  ids = np.array([[0, 1, 2, 3, 5]])
  mask = np.array([[True, True, True, True, False]])
  own = text_identity_loss(table[ids], table, ids, mask)
  same = text_identity_loss(np.zeros((1, 5, 4), np.float32), table, ids, mask)
  assert float(own) < 0.01
  np.testing.assert_allclose(float(same), np.log(6), rtol=1e-5)


def test_slot_loss_counts_only_stated_attributes():
  """Cross-entropy per group, -1 labels skipped; near 0 for confident right logits, log(n) per
  group for uniform ones."""
  from sorax.train.step import slot_loss
  classes = (3, 2)
  labels = np.array([[[0, 1], [2, -1]]])  # [B=1, K=2, G=2]
  right = np.full((1, 2, 5), -20.0, np.float32)
  right[0, 0, 0] = right[0, 0, 3 + 1] = right[0, 1, 2] = 20.0
  assert float(slot_loss(right, labels, classes)) < 1e-3
  uniform = np.zeros((1, 2, 5), np.float32)
  want = (2 * np.log(3) + np.log(2)) / 3 * 2  # mean over the 3 labelled, times 2 groups
  np.testing.assert_allclose(float(slot_loss(uniform, labels, classes)), want, rtol=1e-5)
  # A wrong logit on an unlabelled group changes nothing.
  wrong = right.copy()
  wrong[0, 1, 3] = 50.0
  np.testing.assert_allclose(float(slot_loss(wrong, labels, classes)),
                             float(slot_loss(right, labels, classes)), atol=1e-6)


def test_slot_and_text_id_weights_train_their_heads(tmp_path):
  """With model.slots + diffusion.slot_weight and diffusion.text_id_weight (one trainer, one
  compile) the step reports both auxiliary losses, and each falls on a fixed batch; a frozen
  pretrained encoder refuses text_id_weight with a clear error."""
  tr = Trainer(tiny("--config.model.slots=4", "--config.diffusion.slot_weight=1.0",
                    "--config.diffusion.text_id_weight=1.0", "--config.optim.lr=3e-3"), tmp_path)
  batch = next(tr.data)
  assert batch["labels"].shape == (2, 4, 6)
  metrics = [tr.train_step(batch) for _ in range(45)]  # two losses share the updates
  tr.close()
  slot = [float(m["slot_loss"]) for m in metrics]
  text_id = [float(m["text_id_loss"]) for m in metrics]
  assert slot[-1] < 0.3 * slot[0], slot
  assert text_id[-1] < 0.5 * text_id[0], text_id
  from sorax.train.trainer import step_config
  with pytest.raises(ValueError, match="text_id_weight trains the text encoder"):
    step_config(tiny("--config.diffusion.text_id_weight=1.0",
                     "--config.model.text_encoder=minilm"))


@pytest.mark.slow  # an option the shipped recipe does not use; run by benchmarks/slow_tests.py
def test_muon_updates_hidden_matrices_and_adam_the_rest(tmp_path):
  """optim.name=muon: scanned block matrices get Muon (their layer axis is a batch axis),
  embeddings/heads/vectors AdamW; training runs and lowers the loss."""
  from sorax.train.state import muon_dims
  tr = Trainer(tiny("--config.optim.name=muon", "--config.optim.lr=3e-3"), tmp_path)
  dims = muon_dims(tr.state.params)
  flat = {jax.tree_util.keystr(p): d for p, d in jax.tree_util.tree_leaves_with_path(
      dims, is_leaf=lambda x: x is None or type(x).__name__ == "MuonDimensionNumbers")}
  wq = next(d for k, d in flat.items() if "['dit']['blocks']['attn']['wq']" in k)
  assert wq.reduction_axis == 1 and wq.output_axis == (2, 3)
  assert next(d for k, d in flat.items() if "patch_embed" in k and "kernel" in k) is None
  assert next(d for k, d in flat.items() if "['text']['embed']" in k) is None
  batch = next(tr.data)
  losses = [float(tr.train_step(batch)["loss"]) for _ in range(25)]
  tr.close()
  assert losses[-1] < losses[0], losses
  with pytest.raises(ValueError, match="unknown optim.name"):
    from sorax.train.state import make_optimizer
    make_optimizer(tiny("--config.optim.name=sgd"))


def test_palette_labels_fold_onto_the_tokens_they_colour():
  """The palette head's labels sit where the pixels they name sit in the latent tokens: the
  palette colours of the labels are the x0 tokens themselves (pixel codec, world clip)."""
  import jax.numpy as jnp
  from sorax import patchify as P
  from sorax.data import world
  from sorax.models.codec import from_pixels
  from sorax.models.generator import palette_latent
  from sorax.train.state import make_codec_from
  from sorax.train.step import palette_index
  cfg = config_lib.load_config(f"{WORLD}:world32", ["--config.model.palette_head=True"])
  codec = make_codec_from(cfg)
  spec = world.random_spec(np.random.default_rng(3), 32, 32, 17)
  video = jnp.asarray(world.render(spec, 32, 32, 17))[None]
  pal_rgb = tuple(tuple(c) for c in cfg.model.palette)
  idx = palette_index(video, pal_rgb)
  assert int(idx.min()) >= 0  # every world pixel is a palette colour
  folded, _ = P.patchify_batch(codec.fold(jnp.repeat(idx[..., None].astype(jnp.float32), 3, -1)),
                               (1, 2, 2))
  labels = jnp.round(folded.reshape(1, folded.shape[1], -1, 3)[..., 0]).astype(jnp.int32)
  x0, _ = P.patchify_batch(codec.encode(from_pixels(video)), (1, 2, 2))
  pal = jnp.asarray(palette_latent(cfg))
  np.testing.assert_allclose(pal[labels].reshape(x0.shape), x0, atol=1e-5)
  assert int(palette_index(jnp.full((2, 3), 7, jnp.uint8)[None], pal_rgb)[0, 0]) == -1


def test_palette_head_outputs_the_expected_colour_and_trains(tmp_path):
  """model.palette_head: the DiT's x0 is the softmax-weighted palette colour of each pixel; the
  cross-entropy loss (with the track loss read from the same logits, and ghost copies in half
  the inputs) trains; a learned codec or
  velocity prediction is refused."""
  tr = Trainer(tiny("--config.model.palette_head=True", "--config.diffusion.palette_weight=1.0",
                    "--config.diffusion.track_weight=0.5",
                    "--config.diffusion.ghost_rate=0.5",
                    "--config.diffusion.prediction=x0", "--config.optim.lr=3e-3"), tmp_path)
  losses = _fit_one_batch_and_save(tr)
  assert losses[-1] < 0.7 * losses[0], losses
  # Guidance on the palette logits: at scale 1 it is the conditional prediction, as velocity
  # guidance is (equal up to float rounding); any scale samples.
  pipe = Pipeline.load(tmp_path)
  prompt = ["small red circle moving right on a navy background"]
  a, b = (pipe.generate(prompt, steps=3, cfg_scale=1.0, guide=g) for g in ("velocity", "logits"))
  assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
  assert pipe.generate(prompt, steps=3, cfg_scale=4.0, guide="logits").shape == a.shape
  with pytest.raises(ValueError, match="unknown guide 'pixels'"):
    pipe.generate(prompt, steps=2, guide="pixels")
  from sorax.models.generator import palette_latent
  with pytest.raises(ValueError, match="needs the pixel codec"):
    palette_latent(tiny("--config.model.palette_head=True", "--config.codec.name=vae"))
  with pytest.raises(ValueError, match="predicts x0"):
    palette_latent(tiny("--config.model.palette_head=True",
                        "--config.diffusion.prediction=velocity"))


@pytest.mark.slow  # an option the shipped recipe does not use; run by benchmarks/slow_tests.py
def test_self_conditioning_trains_and_samples(tmp_path):
  """model.self_cond with diffusion.self_cond_rate: the step runs (both branches of the coin),
  the loss falls, and the sampler feeds the estimate through (finite output)."""
  tr = Trainer(tiny("--config.model.self_cond=True", "--config.diffusion.self_cond_rate=0.5",
                    "--config.optim.lr=3e-3"), tmp_path)
  losses = _fit_one_batch_and_save(tr)
  assert losses[-1] < 0.7 * losses[0], losses
  pipe = Pipeline.load(tmp_path)
  video = pipe.generate(["small red circle moving right on a navy background"], seed=0, steps=2)
  assert video.shape[0] == 1 and video.dtype == np.uint8
  with pytest.raises(ValueError, match="needs a palette head"):  # this model has none
    pipe.generate(["small red circle"], steps=2, guide="logits")


def test_seam_weight_weighs_the_frames_next_to_given_ones(tmp_path):
  """With a first frame given, seam_weight changes the loss (the made frame beside it counts
  1 + seam_weight times); without conditioning there is no seam, which is one clear error."""
  first = ["--config.conditioning.none=0", "--config.conditioning.first=1"]
  losses = _first_losses(tmp_path, {"plain": first,
                                    "seam": first + ["--config.diffusion.seam_weight=4"]})
  assert all(np.isfinite(v) for v in losses.values()), losses
  assert losses["seam"] != losses["plain"], losses
  with pytest.raises(ValueError, match="seam_weight weighs the frames next to given ones"):
    Trainer(tiny("--config.diffusion.seam_weight=4"), tmp_path / "refused")
