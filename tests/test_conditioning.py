"""Masked conditioning: the mode registry, the training step, and given frames held by the
sampler (every verb) on a tiny model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sorax import verbs
from sorax.diffusion import conditioning as cond
from sorax.models.codec import SpaceToDepthCodec
from sorax.train.trainer import Trainer
from tests.test_train import tiny, tiny_pipeline

# 5 frames -> 3 latent frames (frame 0, then pairs) of 16x16 -> 4x4 latent, 1x2x2 patches: 12 tokens.
CAUSAL = ["--config.codec.temporal=2", "--config.codec.spatial=4", "--config.codec.causal=True",
          "--config.data.frames=5", "--config.model.patch=[1,2,2]"]
MIX = ["--config.conditioning.none=0.3", "--config.conditioning.first=0.2",
       "--config.conditioning.prefix=0.2", "--config.conditioning.suffix=0.1",
       "--config.conditioning.ends=0.1", "--config.conditioning.scattered=0.1"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
  p = tiny_pipeline(tmp_path_factory.mktemp("cond"), 3, *CAUSAL, *MIX)
  p.policy = None
  return p


def _video(seed, frames=5):
  return np.random.default_rng(seed).integers(0, 256, (frames, 16, 16, 3), dtype=np.uint8)


# -- modes and masks ------------------------------------------------------------------------------


def test_modes_give_what_their_names_say():
  rng = np.random.default_rng(0)
  assert not cond.none(rng, 5).any()
  assert cond.first(rng, 5).tolist() == [True, False, False, False, False]
  assert cond.last(rng, 5).tolist() == [False, False, False, False, True]
  assert cond.prefix(rng, 5, k=2).tolist() == [True, True, False, False, False]
  assert cond.suffix(rng, 5, k=2).tolist() == [False, False, False, True, True]
  assert cond.first_last(rng, 5).tolist() == [True, False, False, False, True]
  assert cond.ends(rng, 5, k=(1, 2)).tolist() == [True, False, False, True, True]
  for _ in range(50):  # drawn lengths always leave something to make
    for mode in ("prefix", "suffix", "ends", "scattered"):
      m = cond.MODES[mode](rng, 9)
      assert m.any() and not m.all(), mode


def test_rates_are_checked_and_drawn_in_proportion():
  with pytest.raises(ValueError, match="unknown conditioning modes"):
    cond.check_rates({"firts": 1.0})
  with pytest.raises(ValueError, match=">= 0"):
    cond.check_rates({"first": -1.0, "none": 2.0})
  masks = cond.sample_masks(np.random.default_rng(0), 4000, 9, {"none": 3.0, "first": 1.0})
  share_first = masks[:, 0].mean()
  assert abs(share_first - 0.25) < 0.03
  assert not masks[:, 1:].any()
  assert not cond.is_active({"none": 1.0, "first": 0.0}) and cond.is_active({"first": 0.1})


def test_token_mask_follows_patchify_order():
  fm = jnp.array([[True, False, True]])
  tok = cond.token_mask(fm, (3, 2, 2), (1, 2, 2))
  assert tok.shape == (1, 12)
  assert tok[0].tolist() == [True] * 4 + [False] * 4 + [True] * 4
  # A token spanning two latent frames is given only when both are.
  tok2 = cond.token_mask(jnp.array([[True, True, True, False]]), (2, 1, 1), (2, 1, 1))
  assert tok2[0].tolist() == [True, False]


def test_near_given_marks_the_frames_beside_given_ones():
  given = cond.token_mask(jnp.array([[False, False, True, False, False],
                                     [False] * 5]), (5, 1, 2), (1, 1, 1))
  near = cond.near_given(given, (5, 1, 2), 1)
  assert near[0].tolist() == [False] * 2 + [True] * 6 + [False] * 2
  assert not near[1].any()  # nothing given: nothing near
  assert cond.near_given(given, (5, 1, 2), 0)[0].tolist() == given[0].tolist()


def test_causal_frame_groups_and_given_latents():
  c = SpaceToDepthCodec(temporal=2, spatial=4, causal=True)
  assert cond.frame_groups(c, 5) == [[0], [1, 2], [3, 4]]
  assert cond.frame_groups(SpaceToDepthCodec(temporal=2, spatial=4), 4) == [[0, 1], [2, 3]]
  # Frame 1 known without its partner 2: that latent frame is not given.
  assert cond.latent_given(c, [True, True, False, True, True]).tolist() == [True, False, True]


def test_training_step_skips_given_tokens_in_the_loss(tmp_path):
  """With every frame given the loss has nothing to learn from: 0 and zero gradients."""
  cfg = tiny("--config.train.steps=1", *CAUSAL, "--config.conditioning.none=0.0",
             "--config.conditioning.prefix=0.0", "--config.conditioning.first=1.0",
             "--config.data.frames=1")
  tr = Trainer(cfg, tmp_path / "all_given")
  metrics = tr.train_step(next(tr.data))
  assert float(metrics["loss"]) == 0.0 and float(metrics["grad_norm"]) == 0.0
  tr.close()
  # The `pipe` fixture's config exactly: its compiled step comes from the session's XLA cache.
  tr = Trainer(tiny("--config.train.steps=3", "--config.optim.lr=1e-2", *CAUSAL, *MIX),
               tmp_path / "mix")
  metrics = tr.train_step(next(tr.data))
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
  tr.close()


# -- the sampler holds given frames ---------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["heun", "renoise"])
def test_given_latent_frames_come_back_unchanged(pipe, sampler):
  video = _video(1)[None]
  known = pipe.encode(video)
  given = np.array([[True, False, True]])
  out = pipe.generate(["red circle"], seed=3, known=known, given=given, sampler=sampler)
  # The pixel codec is lossless: the given frames (0, and the pair 3-4) are the input's.
  np.testing.assert_array_equal(out[0, [0, 3, 4]], video[0, [0, 3, 4]])
  assert not np.array_equal(out[0, 1:3], video[0, 1:3])


def test_quiet_frames_change_only_the_stochastic_conditioned_sample(pipe):
  video = _video(1)[None]
  known, given = pipe.encode(video), np.array([[True, False, False]])
  kw = dict(seed=3, known=known, given=given, sampler="renoise", eta=2.0)
  plain = pipe.generate(["red circle"], **kw)
  quiet = pipe.generate(["red circle"], quiet=1, **kw)
  np.testing.assert_array_equal(quiet[0, 0], video[0, 0])  # the given frame is still held
  assert not np.array_equal(quiet, plain)
  # Text to video has no given frames, so nothing is quiet.
  np.testing.assert_array_equal(pipe.generate(["red circle"], seed=3, quiet=1),
                                pipe.generate(["red circle"], seed=3))
  with pytest.raises(ValueError, match="quiet"):
    pipe.generate(["red circle"], quiet=-1, **kw)


def test_context_guidance_holds_given_frames_and_its_two_forms_agree(pipe):
  video = _video(1)[None]
  known, given = pipe.encode(video), np.array([[True, False, False]])
  kw = dict(seed=3, known=known, given=given, sampler="heun", cfg_scale=2.0)
  plain = pipe.generate(["red circle"], **kw)
  np.testing.assert_array_equal(pipe.generate(["red circle"], guide_context=0.0, **kw), plain)
  joint = pipe.generate(["red circle"], guide_context=2.0, **kw)  # the null branch drops them
  apart = pipe.generate(["red circle"], guide_context=2.0 + 1e-6, **kw)  # three branches
  strong = pipe.generate(["red circle"], guide_context=6.0, **kw)
  for out in (joint, apart, strong):
    np.testing.assert_array_equal(out[0, 0], video[0, 0])  # the given frame is still held
  assert not np.array_equal(joint, plain) and not np.array_equal(strong, joint)
  # Two scales that are equal are the one-call form: A + s (B - A) + s (C - B) = A + s (C - A).
  assert np.abs(joint.astype(int) - apart.astype(int)).max() <= 2
  # Text to video has no given frames: nothing to guide toward.
  np.testing.assert_array_equal(pipe.generate(["red circle"], seed=3, guide_context=6.0),
                                pipe.generate(["red circle"], seed=3))
  with pytest.raises(ValueError, match="guide_context"):
    pipe.generate(["red circle"], guide_context=-1.0, **kw)


def test_context_guidance_is_the_default_for_video_context_only(pipe, monkeypatch):
  seen, real = [], pipe.generate
  monkeypatch.setattr(pipe, "generate",
                      lambda *a, **k: seen.append(k.get("guide_context")) or real(*a, **k))
  verbs.animate(pipe, _video(1)[0], "red circle")  # an image: context guidance would freeze it
  verbs.extend(pipe, _video(1), 0.25, "forward", "red circle")
  verbs.extend(pipe, _video(1), 0.25, "forward", "red circle", guide_context=0.0)
  assert seen == [0.0, verbs.VERB_GUIDE_CONTEXT, 0.0]


def test_edit_strength_zero_returns_the_input_and_one_ignores_it(pipe):
  video = _video(2)
  np.testing.assert_array_equal(verbs.edit(pipe, video, "red circle", 0.0), video)
  fresh = pipe.generate(["red circle"], seed=0)[0]
  np.testing.assert_array_equal(verbs.edit(pipe, video, "red circle", 1.0), fresh)


def test_animate_keeps_the_image_as_frame_zero(pipe):
  image = _video(3)[0]
  out = verbs.animate(pipe, image, "red circle")
  assert out.shape == (5, 16, 16, 3)
  np.testing.assert_array_equal(out[0], image)


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_extend_keeps_the_video_and_adds_the_asked_length(pipe, direction):
  video = _video(4)
  out = verbs.extend(pipe, video, seconds=1.0, direction=direction, prompt="red circle")
  assert len(out) == 5 + 8
  kept = out[:5] if direction == "forward" else out[-5:]
  np.testing.assert_array_equal(kept, video)
  again = verbs.extend(pipe, out, seconds=0.5, direction=direction)  # extend an extension
  assert len(again) == 13 + 4


def test_join_score_measures_the_jump_against_the_given_pace():
  # A square moving 1 px a frame; the first 4 frames are given.
  frames = np.zeros((8, 16, 16, 3), np.uint8)
  for k in range(8):
    frames[k, 4:8, k:k + 4] = 255
  known = np.arange(8) < 4
  assert verbs.join_score(frames, known) == pytest.approx(1.0)  # moves on at the same pace
  jumped = frames.copy()
  jumped[4:] = np.roll(frames[4:], 5, axis=2)  # the made frames start 5 px further on
  assert verbs.join_score(jumped, known) > 3.0
  assert verbs.join_score(frames, np.ones(8, bool)) == 0.0  # nothing made
  assert verbs.join_score(frames, np.zeros(8, bool)) == 0.0  # nothing given
  # One given frame (animate): the made frames' own pace.
  assert verbs.join_score(frames, np.arange(8) == 0) == pytest.approx(1.0)


def test_window_best_of_keeps_the_smoothest_candidate(pipe):
  video = _video(4)
  known = np.arange(5) < 3
  pixels = np.where(known[:, None, None, None], video, 0).astype(np.uint8)
  one = verbs.window(pipe, "red circle", pixels, known, seed=2)
  best = verbs.window(pipe, "red circle", pixels, known, seed=2, best_of=3)
  # The candidates are rows 0..2 of one batch of the prompt (row 0: the plain sample).
  latent = pipe.encode(pixels[None])
  given = np.repeat(cond.latent_given(pipe.codec, known)[None], 3, 0)
  cands = pipe.generate(["red circle"] * 3, seed=2, known=np.repeat(latent, 3, 0), given=given,
                        **verbs._sampling({}, verbs.VERB_GUIDE_CONTEXT))  # video context
  cands[:, known] = pixels[known]
  np.testing.assert_array_equal(one, cands[0])
  scores = [verbs.join_score(c, known) for c in cands]
  assert len(set(scores)) == 3
  np.testing.assert_array_equal(best, cands[int(np.argmin(scores))])
  np.testing.assert_array_equal(best[known], video[known])
  with pytest.raises(ValueError, match="best_of"):
    verbs.window(pipe, "red circle", pixels, known, best_of=0)
  with pytest.raises(ValueError, match="one sample"):
    verbs.edit(pipe, video, "red circle", 0.5, best_of=2)


def test_fill_changes_only_the_missing_frames(pipe):
  video = _video(5, frames=9)
  out = verbs.fill(pipe, video, (3, 4), "red circle")
  keep = [0, 1, 2, 5, 6, 7, 8]
  np.testing.assert_array_equal(out[keep], video[keep])
  assert not np.array_equal(out[3:5], video[3:5])


def test_interpolate_connect_and_loop_hold_their_ends(pipe):
  a, b = _video(6), _video(7)
  out = verbs.interpolate(pipe, a[0], b[0], "red circle")
  np.testing.assert_array_equal(out[0], a[0])
  np.testing.assert_array_equal(out[-1], b[0])
  joined = verbs.connect(pipe, a, b, "red circle")
  np.testing.assert_array_equal(joined[:5], a)
  np.testing.assert_array_equal(joined[-5:], b)
  assert len(joined) > 10
  looped = verbs.loop(pipe, "red circle")
  assert len(looped) > 5


def test_bad_inputs_get_clear_errors(pipe):
  with pytest.raises(ValueError, match="alpha"):
    verbs.check_pixels(np.zeros((16, 16, 4), np.uint8), 3, "a.png")
  with pytest.raises(ValueError, match="grayscale"):
    verbs.check_pixels(np.zeros((16, 16), np.uint8), 3, "a.png")
  with pytest.raises(ValueError, match="empty"):
    verbs.check_pixels(np.zeros((0, 16, 16, 3), np.uint8), 4, "v.mp4")
  with pytest.raises(ValueError, match="out of bounds"):
    verbs.parse_range("3-9", 5)
  with pytest.raises(ValueError, match="A-B"):
    verbs.parse_range("three", 5)
  with pytest.raises(ValueError, match="too short"):
    verbs.extend(pipe, _video(0, frames=1), 1.0, "backward")
  notes = []
  fitted = verbs.fit_video(np.zeros((2, 32, 48, 3), np.uint8), 16, 16, notice=notes.append)
  assert fitted.shape == (2, 16, 16, 3) and "resized" in notes[0]
