"""Best-of-K (sorax/diffusion/rerank.py, Pipeline.generate(best_of=K)): the score's math, and
that the pipeline returns the plain sample its own score ranks first."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flax import nnx

from sorax import sample as sample_lib
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
  skey = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(7), 0), 2)
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
                              height=d.height, width=d.width)
  read = "small red circle moving left on a navy background"
  unread = "a red ball rolls to the left"  # not a terse world caption
  prompts = [read, unread]
  pipe.__dict__["captioner"] = cap.Captioner(small, rngs=nnx.Rngs(1))  # the cached property
  try:
    plain = [pipe.generate(prompts, seed=7 + j, steps=2) for j in range(3)]
    best = pipe.generate(prompts, seed=7, steps=2, best_of=3, judge="captioner")
    by_self = pipe.generate(prompts, seed=7, steps=2, best_of=3, judge="self")
    objs = parse_terse(read).objects
    lp = [cap.score_videos(pipe.captioner, p[:1], [objs])[0] for p in plain]
    assert len(set(lp)) == 3  # the judge tells the candidates apart
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
