"""Every verb on given frames runs from the CLI on a tiny model, goes through the safety guard
(its output is recognised by `sorax detect`), and bad input gets one clear error with nothing
written."""

import json

import numpy as np
import pytest
from PIL import Image

from sorax import cli, verbs
from sorax.data import world
from sorax.data.video_write import write_mp4
from tests.test_config import WORLD
from tests.test_safety_cli import detect, run
from tests.test_train import TINY

# 32x32 (one watermark tile) x 9 frames: causal pixel codec -> 5 latent frames.
CANVAS = ["--config.data.height=32", "--config.data.width=32", "--config.data.frames=9",
          "--config.codec.temporal=2", "--config.codec.spatial=4", "--config.codec.causal=True",
          "--config.model.patch=[1,2,2]"]
PROMPT = "large red circle moving right on a navy background"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  work = tmp_path_factory.mktemp("run") / "w"
  assert cli.main(["train", "--config", f"{WORLD}:demo", "--workdir", str(work), "--no-progress",
                   "--config.train.steps=1", *TINY, *CANVAS]) == 0
  return work


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  d = tmp_path_factory.mktemp("in")
  spec = world.random_spec(np.random.default_rng(0), 32, 32, 9)
  clip = world.render(spec, 32, 32, 9)
  write_mp4(d / "a.mp4", clip)
  write_mp4(d / "b.mp4", clip[::-1].copy())
  write_mp4(d / "fast.mp4", np.repeat(clip, 2, axis=0), fps=16)
  Image.fromarray(clip[0]).save(d / "first.png")
  Image.fromarray(clip[-1]).save(d / "last.png")
  Image.fromarray(np.zeros((32, 32, 4), np.uint8)).save(d / "alpha.png")
  Image.fromarray(np.zeros((32, 32), np.uint8)).save(d / "gray.png")
  Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(d / "wide.png")
  (d / "broken.mp4").write_bytes(b"not a video at all")
  return d


def _verb(capsys, ckpt, out, *argv):
  rc, stdout, err = run(capsys, *argv, "--checkpoint", str(ckpt), "--out", str(out),
                        "--steps", "1")
  return rc, stdout, err


CASES = {
    "animate": lambda d: ["animate", str(d / "first.png"), "--prompt", PROMPT],
    "extend": lambda d: ["extend", str(d / "a.mp4"), "--seconds", "1"],
    "extend_back": lambda d: ["extend", str(d / "a.mp4"), "--seconds", "0.5", "--direction",
                              "backward", "--prompt", PROMPT],
    "fill": lambda d: ["fill", str(d / "a.mp4"), "--missing", "3-5"],
    "interpolate": lambda d: ["interpolate", str(d / "first.png"), str(d / "last.png"),
                              "--prompt", PROMPT],
    "connect": lambda d: ["connect", str(d / "a.mp4"), str(d / "b.mp4"), "--prompt", PROMPT],
    "loop": lambda d: ["loop", "--prompt", PROMPT],
    "edit": lambda d: ["edit", str(d / "a.mp4"), "--prompt", PROMPT, "--strength", "0.5"],
}
FRAMES = {"animate": 9, "extend": 17, "extend_back": 13, "fill": 9, "interpolate": 9,
          "edit": 9}


@pytest.mark.parametrize("case", list(CASES))
def test_verb_writes_a_guarded_video(capsys, tmp_path, ckpt, inputs, case):
  argv = CASES[case](inputs)
  rc, stdout, err = _verb(capsys, ckpt, tmp_path, *argv)
  assert rc == 0, err
  result = json.loads(stdout)
  verb = argv[0]
  assert result["videos"] == [str(tmp_path / f"{verb}.mp4")]
  if case in FRAMES:
    assert result["frames"] == FRAMES[case]
  r = detect(capsys, tmp_path / f"{verb}.mp4")[0]
  assert r["verdict"] == "sorax", r
  assert r["c2pa"]["valid"] and r["watermark"]["present"]


def test_other_frame_rates_and_sizes_are_adapted_with_a_notice(capsys, tmp_path, ckpt, inputs):
  rc, _, err = _verb(capsys, ckpt, tmp_path / "a", "extend", str(inputs / "fast.mp4"),
                     "--seconds", "0.5")
  assert rc == 0, err
  assert "16 fps; resampled" in err
  rc, _, err = _verb(capsys, ckpt, tmp_path / "b", "animate", str(inputs / "wide.png"),
                     "--prompt", PROMPT)
  assert rc == 0, err
  assert "resized" in err


@pytest.mark.parametrize("argv, message", [
    (["animate", "{d}/alpha.png", "--prompt", PROMPT], "alpha channel"),
    (["animate", "{d}/gray.png", "--prompt", PROMPT], "grayscale"),
    (["animate", "{d}/missing.png", "--prompt", PROMPT], "not found"),
    (["extend", "{d}/broken.mp4", "--seconds", "1"], "broken.mp4"),
    (["fill", "{d}/a.mp4", "--missing", "4-20"], "out of bounds"),
    (["fill", "{d}/a.mp4", "--missing", "x"], "A-B"),
    (["edit", "{d}/a.mp4", "--prompt", PROMPT, "--strength", "2"], "strength"),
    (["extend", "{d}/a.mp4", "--seconds", "0"], "adds no frame"),
    (["fill", "{d}/a.mp4", "--missing", "3-5", "--sampler", "renoise", "--eta", "-1"], "--eta"),
    (["fill", "{d}/a.mp4", "--missing", "3-5", "--guide-context", "-1"], "--guide-context"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(capsys, tmp_path, ckpt, inputs, argv,
                                                         message):
  out = tmp_path / "o"
  rc, _, err = _verb(capsys, ckpt, out, *[a.format(d=inputs) for a in argv])
  assert rc == 2, err
  assert message in err
  assert len(err.strip().splitlines()) == 1
  assert not out.exists() or not any(out.iterdir())


def test_eta_reaches_the_sampler(capsys, tmp_path, ckpt, inputs, monkeypatch):
  """--eta goes from the CLI to the verb and from the verb to Pipeline.generate (whose samplers
  tests/test_flow.py checks), and a negative --eta is refused (above)."""
  from sorax.sample import Pipeline
  pipe = Pipeline.load(str(ckpt))
  pipe.policy = None
  calls = []
  generate = pipe.generate
  def spy_generate(*a, **kw):
    calls.append(kw)
    return generate(*a, **kw)
  monkeypatch.setattr(pipe, "generate", spy_generate)
  clip = world.render(world.random_spec(np.random.default_rng(0), 32, 32, 9), 32, 32, 9)
  verbs.fill(pipe, clip, (3, 5), PROMPT, steps=2, sampler="renoise", eta=0.75)
  assert calls[-1]["eta"] == 0.75 and calls[-1]["sampler"] == "renoise"
  # The verbs' schedule and quiet frames by default ...
  assert calls[-1]["eta_late"] == verbs.VERB_ETA_LATE and calls[-1]["quiet"] == verbs.VERB_QUIET
  verbs.fill(pipe, clip, (3, 5), PROMPT, steps=2, sampler="renoise", eta_late=(), quiet=0)
  assert calls[-1]["eta_late"] == () and calls[-1]["quiet"] == 0  # ... which a caller turns off
  seen = {}
  def spy_fill(pipe, video, missing, prompt="", **kw):
    seen.update(kw)
    return video
  monkeypatch.setattr(verbs, "fill", spy_fill)
  rc, _, err = _verb(capsys, ckpt, tmp_path, "fill", str(inputs / "a.mp4"), "--missing", "3-5",
                     "--sampler", "renoise", "--eta", "0.25", "--guide-context", "3")
  assert rc == 0, err
  assert seen["eta"] == 0.25 and seen["sampler"] == "renoise" and seen["guide_context"] == 3.0


def test_eta_late_reaches_the_sampler(ckpt, monkeypatch):
  """Pipeline.generate's eta_late (t_switch, eta) reaches renoise (whose schedule
  tests/test_flow.py checks), the config's default is none, and a bad pair is refused."""
  from sorax.diffusion import samplers
  from sorax.sample import Pipeline
  pipe = Pipeline.load(str(ckpt))
  pipe.policy = None
  seen = []
  renoise = samplers.renoise
  def spy(*a, late=None, **kw):
    seen.append(late)
    return renoise(*a, late=late, **kw)
  monkeypatch.setitem(samplers.SAMPLERS, "renoise", spy)
  kw = dict(steps=3, sampler="renoise", eta=1.75)  # a setting no other test compiles
  pipe.generate([PROMPT], eta_late=(0.375, 0.25), **kw)
  pipe.generate([PROMPT], **kw)
  assert seen == [(0.375, 0.25), None]
  with pytest.raises(ValueError, match="eta_late"):
    pipe.generate([PROMPT], eta_late=(0.5,), **kw)


def test_unsafe_prompt_is_refused_before_anything(capsys, tmp_path, ckpt, inputs):
  out = tmp_path / "o"
  rc, _, err = _verb(capsys, ckpt, out, "animate", str(inputs / "first.png"), "--prompt",
                     "a n.u.d.e person")
  assert rc == 3 and "refused" in err
  assert not out.exists()


def test_cli_names_every_verb():
  assert cli.VERB_NAMES == verbs.VERBS
