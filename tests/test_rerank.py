"""Best-of-K (sorax/diffusion/rerank.py, Pipeline.generate(best_of=K)): the score's math, and
that the pipeline returns the plain sample its own score ranks first."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from sorax import sample as sample_lib
from sorax.data import world
from sorax.data.captions import parse_terse
from sorax.diffusion import rerank
from sorax.models import captioner as cap
from sorax.models import weights
from tests.test_train import tiny_pipeline


def test_a_perfect_denoiser_scores_zero_and_a_blind_one_the_signal_power():
  x0 = jax.random.normal(jax.random.key(0), (3, 5, 4))
  noise = jax.random.normal(jax.random.key(1), (2, 2) + x0.shape)
  times = jnp.asarray([0.5, 0.9])
  np.testing.assert_allclose(rerank.denoise_error(lambda x_t, t: x0, x0, noise, times), 0.0)
  blind = rerank.denoise_error(lambda x_t, t: jnp.zeros_like(x_t), x0, noise, times)
  np.testing.assert_allclose(blind, jnp.mean(jnp.square(x0), axis=(1, 2)), rtol=1e-6)


def test_the_candidate_the_denoiser_expects_wins():
  # A denoiser that always answers `template` explains a candidate near it best.
  template = jax.random.normal(jax.random.key(2), (1, 6, 3))
  cands = [template + 1.0, template + 0.01, template - 0.5]
  noise = jax.random.normal(jax.random.key(3), (1, 2, 1, 6, 3))
  times = jnp.asarray([0.8, 0.9])
  scores = jnp.stack([rerank.denoise_error(lambda x_t, t: template, c, noise, times)
                      for c in cands])
  assert int(rerank.pick(scores)[0]) == 1
  assert int(rerank.pick(jnp.zeros((3, 2)))[0]) == 0  # ties keep the plain sample


def test_noise_of_the_wrong_shape_is_refused():
  x0 = jnp.zeros((2, 4, 3))
  with pytest.raises(ValueError, match="noise"):
    rerank.denoise_error(lambda x_t, t: x_t, x0, jnp.zeros((1, 3, 2, 4, 3)), jnp.ones(2))


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
  p = tiny_pipeline(tmp_path_factory.mktemp("rerank"), 2)
  p.policy = None
  return p


def test_best_of_returns_the_candidate_its_score_ranks_first(pipe):
  prompts = ["small red circle moving left on a navy background",
             "large blue square static on a gray background"]
  plain = [pipe.generate(prompts, seed=7 + j, steps=2) for j in range(3)]
  np.testing.assert_array_equal(pipe.generate(prompts, seed=7, steps=2, best_of=1), plain[0])
  best = pipe.generate(prompts, seed=7, steps=2, best_of=3)
  # Each prompt's result is one of its plain samples, the one with the lowest score.
  c = pipe.cfg
  ids, mask = pipe.tokenizer.encode(prompts, c.data.text_len)
  shape = pipe.latent_shape(c.data.frames, c.data.height, c.data.width)
  score = sample_lib._score_fn(pipe.graphdef, shape, tuple(c.model.patch), c.diffusion.prediction)
  skey = sample_lib.score_keys(7, np.arange(len(prompts)))
  lat = [jnp.asarray(pipe.encode(v)) for v in plain]
  scores = np.stack([np.asarray(score(pipe.params, x, ids, mask, skey)) for x in lat])
  for i in range(len(prompts)):
    matches = [j for j in range(3) if np.array_equal(best[i], plain[j][i])]
    assert matches, f"prompt {i}: best_of returned none of its candidates"
    assert int(np.argmin(scores[:, i])) in matches


def test_best_of_default_comes_from_the_config_and_bad_values_are_refused(pipe):
  prompts = ["small red circle moving left on a navy background"]
  pipe.cfg.sample.best_of = 2
  try:
    by_default = pipe.generate(prompts, seed=3, steps=2)
  finally:
    pipe.cfg.sample.best_of = 1
  np.testing.assert_array_equal(by_default, pipe.generate(prompts, seed=3, steps=2, best_of=2))
  with pytest.raises(ValueError, match="best_of=0"):
    pipe.generate(prompts, steps=2, best_of=0)
  c = pipe.cfg
  known = np.zeros((1,) + pipe.latent_shape(c.data.frames, c.data.height, c.data.width),
                   np.float32)
  with pytest.raises(ValueError, match="text-to-video only"):
    pipe.generate(prompts, steps=2, best_of=2, known=known, strength=0.5)
  assert "best_of" in weights.SAMPLE_SETTINGS


def test_the_captioner_judges_the_prompts_it_reads_and_the_dit_the_others(pipe):
  d = pipe.cfg.data
  small = cap.CaptionerConfig(merges=((1, 4, 4),), widths=(8,), hidden=16, frames=d.frames,
                              height=d.height, width=d.width, wall=True)
  read = "small red circle moving left on a navy background, behind a gray wall"
  unread = "a red ball rolls to the left"  # not a terse world caption
  prompts = [read, unread]
  pipe.__dict__["captioner"] = cap.Captioner(small, rngs=nnx.Rngs(1))  # the cached property
  try:
    plain = [pipe.generate(prompts, seed=7 + j, steps=2) for j in range(3)]
    best = pipe.generate(prompts, seed=7, steps=2, best_of=3, judge="captioner")
    by_self = pipe.generate(prompts, seed=7, steps=2, best_of=3, judge="self")
    objs = parse_terse(read).objects
    lp = [cap.score_videos(pipe.captioner, p[:1], [objs], walls=[True])[0] for p in plain]
    assert len(set(lp)) == 3  # the judge tells the candidates apart
    # The judge asks the wall reader about the prompt's wall as well.
    assert lp != [cap.score_videos(pipe.captioner, p[:1], [objs])[0] for p in plain]
    report = {}
    pipe.generate(prompts, seed=7, steps=2, best_of=3, judge="captioner", report=report)
    np.testing.assert_allclose(report["log_p"][0], max(lp), rtol=1e-5)
    np.testing.assert_array_equal(best[0], plain[int(np.argmax(lp))][0])
    np.testing.assert_array_equal(best[1], by_self[1])
    # A clip size the captioner was not built for: the DiT judges every prompt.
    other = pipe.generate(prompts, seed=7, steps=2, best_of=3, judge="captioner",
                          width=2 * d.width)
    np.testing.assert_array_equal(
        other, pipe.generate(prompts, seed=7, steps=2, best_of=3, width=2 * d.width))
  finally:
    del pipe.__dict__["captioner"]
  with pytest.raises(ValueError, match="unknown judge"):
    pipe.generate([read], steps=2, best_of=2, judge="oracle")


def test_a_prompts_sample_does_not_depend_on_the_batch_it_is_drawn_in(pipe):
  prompts = ["small red circle moving left on a navy background",
             "large blue square static on a gray background",
             "medium green triangle moving up on a white background"]
  whole = pipe.generate(prompts, seed=4, steps=2, batch_size=3)
  np.testing.assert_array_equal(pipe.generate(prompts, seed=4, steps=2, batch_size=1), whole)
  np.testing.assert_array_equal(pipe.generate(prompts, seed=4, steps=2, batch_size=2), whole)
  # Part of the list redrawn at its positions.
  np.testing.assert_array_equal(pipe.generate(prompts[2:], seed=4, steps=2, rows=[2]), whole[2:])
  assert not np.array_equal(pipe.generate(prompts[2:], seed=4, steps=2), whole[2:])
  with pytest.raises(ValueError, match="rows"):
    pipe.generate(prompts[2:], steps=2, rows=[1, 2])


def test_best_of_stops_drawing_for_a_prompt_once_the_captioner_is_sure(pipe):
  d = pipe.cfg.data
  small = cap.CaptionerConfig(merges=((1, 4, 4),), widths=(8,), hidden=16, frames=d.frames,
                              height=d.height, width=d.width)
  prompts = ["small red circle moving left on a navy background",
             "large blue square on a black background", "a red ball rolls to the left"]
  pipe.__dict__["captioner"] = cap.Captioner(small, rngs=nnx.Rngs(1))  # the cached property
  try:
    plain = [pipe.generate(prompts, seed=7 + j, steps=2) for j in range(4)]
    lp = np.stack([cap.score_videos(pipe.captioner, p[:2], [parse_terse(q).objects
                                                           for q in prompts[:2]])
                   for p in plain])  # [4 candidates, 2 read prompts]
    best2 = lp[:2].max(0)
    # A stop between the two prompts' best of 2: the surer one stops at 2, the other draws 4.
    sure = int(np.argmax(best2))
    stop = float(best2.mean())
    assert best2[sure] >= stop > best2[1 - sure]
    report = {}
    got = pipe.generate(prompts, seed=7, steps=2, best_of=4, judge="captioner",
                        best_of_stop=stop, best_of_min=2, report=report)
    assert report["draws"][sure] == 2 and report["draws"][1 - sure] == 4
    assert report["draws"][2] == 2  # unread: best_of_min candidates, judged by the DiT
    np.testing.assert_array_equal(got[sure], plain[int(np.argmax(lp[:2, sure]))][sure])
    np.testing.assert_array_equal(got[1 - sure], plain[int(np.argmax(lp[:, 1 - sure]))][1 - sure])
    np.testing.assert_allclose(report["log_p"][:2], [lp[:2, sure].max() if i == sure
                                                     else lp[:, i].max() for i in range(2)],
                               rtol=1e-5)
    assert np.isnan(report["log_p"][2])
    # No stop: every read prompt draws all four.
    report = {}
    pipe.generate(prompts, seed=7, steps=2, best_of=4, judge="captioner", report=report)
    assert list(report["draws"]) == [4, 4, 4]
    with pytest.raises(ValueError, match="best_of_min"):
      pipe.generate(prompts, steps=2, best_of=4, judge="captioner", best_of_stop=0.0,
                    best_of_min=0)
  finally:
    del pipe.__dict__["captioner"]


def test_captioner_bank_is_built_in_chunks_and_resumed(pipe, tmp_path):
  from sorax.train import captioner_bank as bank_lib  # noqa: PLC0415
  out = tmp_path / "bank.npz"
  d = pipe.cfg.data
  first = bank_lib.build(pipe, out, 3, seed=5, strength=(0.3, 0.5), chunk=2)
  assert first["video"].shape == (3, d.frames, d.height, d.width, 3)
  assert list(first["index"]) == [0, 1, 2] and set(first["seed"]) == {5}
  assert ((first["strength"] >= 0.3) & (first["strength"] <= 0.5)).all()
  more = bank_lib.build(pipe, out, 5, seed=5, chunk=2)  # resumes: 3 kept, 2 added
  assert list(more["index"]) == [0, 1, 2, 3, 4]
  np.testing.assert_array_equal(more["video"][:3], first["video"])
  np.testing.assert_array_equal(bank_lib.load_bank(out)["video"], more["video"])
  with pytest.raises(ValueError, match="seed"):
    bank_lib.build(pipe, out, 6, seed=6)
  # Strength 0: SDEdit from t = 0 returns its start, and the pixel codec is lossless.
  zero = bank_lib.build(pipe, tmp_path / "zero.npz", 2, seed=5, strength=(0.0, 0.0))
  for i in range(2):
    np.testing.assert_array_equal(zero["video"][i],
                                  world.make_clip(5, i, d.height, d.width, d.frames).video)
  with pytest.raises(FileNotFoundError, match="captioner_bank"):
    bank_lib.load_bank(tmp_path / "none.npz")
  np.savez(tmp_path / "x.npz", video=np.zeros((1, 2, 4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match="missing arrays"):
    bank_lib.load_bank(tmp_path / "x.npz")


def test_time_shift_defaults_to_the_training_warp_and_changes_the_steps(pipe):
  from sorax.diffusion import flow  # noqa: PLC0415
  prompts = ["small red circle moving left on a navy background"]
  c = pipe.cfg
  grid = np.prod(np.asarray(pipe.latent_shape(c.data.frames, c.data.height, c.data.width)[:3])
                 // np.asarray(c.model.patch))
  trained = flow.resolution_shift(int(grid), c.diffusion.base_tokens, c.diffusion.base_shift)
  plain = pipe.generate(prompts, seed=5, steps=3)
  np.testing.assert_array_equal(plain, pipe.generate(prompts, seed=5, steps=3,
                                                     time_shift=trained))
  assert not np.array_equal(plain, pipe.generate(prompts, seed=5, steps=3,
                                                 time_shift=trained * 4))
  with c.unlocked():  # the config's default (what a shipped file's metadata may carry)
    c.sample.time_shift = trained * 4
  try:
    np.testing.assert_array_equal(pipe.generate(prompts, seed=5, steps=3),
                                  pipe.generate(prompts, seed=5, steps=3, time_shift=trained * 4))
  finally:
    with c.unlocked():
      del c.sample["time_shift"]
  with pytest.raises(ValueError, match="time_shift=0"):
    pipe.generate(prompts, steps=3, time_shift=0)
  assert "time_shift" in weights.SAMPLE_SETTINGS
