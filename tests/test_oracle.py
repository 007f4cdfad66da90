"""The world's scorer: ground truth passes (raw and through H.264), wrong videos fail, garbage
never crashes."""

import dataclasses

import numpy as np
import pytest

from sorax.data import oracle as O
from sorax.data import video_io
from sorax.data import world as W

SIZES = [(64, 64, 16), (48, 80, 24), (96, 64, 32)]
N_CLIPS = 100
N_MP4 = 24  # clips a size through H.264 (encoding is most of this file's time)
SEED = 2024


def _prompt(spec):
  """What a prompt carries: the terse caption's spec (no starts)."""
  return W.parse_terse(W.caption(spec, "terse", None))


def _with(spec, k, **changes):
  objs = list(spec.objects)
  objs[k] = dataclasses.replace(objs[k], **changes)
  return dataclasses.replace(spec, objects=tuple(objs))


@pytest.fixture(scope="module")
def clips():
  return {hwt: [W.make_clip(SEED, i, *hwt) for i in range(N_CLIPS)] for hwt in SIZES}


@pytest.fixture(scope="module")
def mp4_videos(clips, tmp_path_factory):
  d = tmp_path_factory.mktemp("mp4")
  out = {}
  for hwt, cs in clips.items():
    out[hwt] = []
    for i, c in enumerate(cs[:N_MP4]):
      path = d / f"{hwt[0]}x{hwt[1]}x{hwt[2]}_{i}.mp4"
      video_io.write_mp4(path, c.video, fps=W.FPS, crf=18)
      v = video_io.read_video(path)
      assert v.shape == c.video.shape
      out[hwt].append(v)
  return out


# ----------------------------------------------------------------------------------------------
# Ground truth passes
# ----------------------------------------------------------------------------------------------


def _check_ground_truth(videos, specs):
  rates = O.score_videos(videos, [_prompt(s) for s in specs])
  assert rates["n"] == len(videos)
  assert rates["all_right"] >= 0.99, rates
  for key in O.CHECKS:
    if key != "permanence" or rates["permanence_n"]:
      assert rates[key] >= 0.99, (key, rates)
  return rates


@pytest.mark.parametrize("hwt", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_ground_truth_scores_all_right(clips, hwt):
  cs = clips[hwt]
  rates = _check_ground_truth([c.video for c in cs], [c.spec for c in cs])
  assert rates["permanence_n"] >= 3  # some clips have an object passing behind the wall


@pytest.mark.parametrize("hwt", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_ground_truth_scores_all_right_after_mp4(clips, mp4_videos, hwt):
  _check_ground_truth(mp4_videos[hwt], [c.spec for c in clips[hwt][:N_MP4]])


def test_shuffled_pairs_score_low(clips, mp4_videos):
  for hwt in SIZES:
    videos = [c.video for c in clips[hwt]]
    specs = [_prompt(c.spec) for c in clips[hwt]]
    shuffled = specs[1:] + specs[:1]
    assert O.score_videos(videos, shuffled)["all_right"] < 0.2
    assert O.score_videos(mp4_videos[hwt], shuffled[:N_MP4])["all_right"] < 0.2


def test_scoring_ignores_start_positions():
  clip = W.make_clip(1, 3, 64, 64, 16)
  moved = dataclasses.replace(clip.spec, objects=tuple(
      dataclasses.replace(o, start=(0.01, 0.99)) for o in clip.spec.objects))
  expected = O.score_video(clip.video, clip.spec)
  assert expected["all_right"]
  assert O.score_video(clip.video, moved) == expected
  assert O.score_video(clip.video, _prompt(clip.spec)) == expected
  assert O.score_video(clip.video, clip.captions["terse"]) == expected  # a terse caption
  assert O.score_video(clip.video, clip.spec.to_json()) == expected  # spec JSON


# ----------------------------------------------------------------------------------------------
# Wrong videos fail the right check
# ----------------------------------------------------------------------------------------------


def _single_object_clips(n, hwt=(64, 64, 16)):
  out, i = [], 0
  while len(out) < n:
    c = W.make_clip(7, i, *hwt, max_objects=1)
    out.append(c)
    i += 1
  return out


def test_wrong_shape_size_motion_fail_their_check():
  h, w, t = 64, 64, 16
  wrong = {"shape": 0, "size": 0, "motion": 0}
  tried = dict(wrong)
  for i, c in enumerate(_single_object_clips(30)):
    o = c.spec.objects[0]
    checks = {
        "shape": _with(c.spec, 0, shape=W.SHAPES[(W.SHAPES.index(o.shape) + 1 + i % 3) % 4]),
        "motion": _with(c.spec, 0, motion="static", size="small")
        if o.motion != "static" else _with(c.spec, 0, motion="bouncing")}
    if o.motion not in ("growing", "shrinking"):
      checks["size"] = _with(c.spec, 0, size="large" if o.size == "small" else "small")
    for key, rendered in checks.items():
      r = O.score_video(W.render(rendered, h, w, t), _prompt(c.spec))
      tried[key] += 1
      wrong[key] += not r[key]
      assert not r["all_right"]
  assert wrong == tried, (wrong, tried)


def test_extra_object_fails_no_extra_only():
  h, w, t = 64, 64, 16
  rng = np.random.default_rng(0)
  failures = 0
  for c in _single_object_clips(10):
    o = c.spec.objects[0]
    extra_color = next(k for k in W.OBJECT_COLORS if k != o.color)
    scene = dataclasses.replace(c.spec, objects=(o, W.ObjectSpec(extra_color, "square", "small",
                                                                 "static")))
    video = W.render(W.complete_spec(scene, rng, h, w, t), h, w, t)
    r = O.score_video(video, _prompt(c.spec))
    assert r["no_extra"] is False and r["all_right"] is False
    failures += not all(r[k] for k in ("color", "shape", "size", "background", "wall"))
  assert failures <= 1


def test_wrong_background_fails_background():
  for c in _single_object_clips(8):
    other = next(b for b in W.BACKGROUNDS if b != c.spec.background)
    video = W.render(dataclasses.replace(c.spec, background=other), 64, 64, 16)
    r = O.score_video(video, _prompt(c.spec))
    assert r["background"] is False and r["all_right"] is False
    assert r["color"] and r["shape"] and r["size"] and r["motion"] and r["no_extra"]


def test_wall_must_be_there_iff_asked():
  for c in _single_object_clips(8):
    toggled = dataclasses.replace(c.spec, wall=not c.spec.wall)
    r = O.score_video(W.render(toggled, 64, 64, 16), _prompt(c.spec))
    assert r["wall"] is False and r["all_right"] is False


def _crossing_scene(shape="square", size="small", motion="right"):
  x = 0.12 if motion == "right" else 0.88
  return W.SceneSpec("forest", True, (W.ObjectSpec("yellow", shape, size, motion, (x, 0.4)),
                                      W.ObjectSpec("blue", "circle", "small", "static",
                                                   (0.85 if motion == "right" else 0.15, 0.8))))


def _first_touch(o, h, w, t):
  cx, _, s = W.object_track(o, h, w, t)
  return int(np.flatnonzero(cx + s / 2 >= 0.425 * w)[0] if o.motion == "right"
             else np.flatnonzero(cx - s / 2 <= 0.575 * w)[0])


@pytest.mark.parametrize("motion", ["right", "left"])
def test_permanence(motion):
  h, w, t = 48, 80, 24
  spec = _crossing_scene(motion=motion)
  prompt = _prompt(spec)
  video = W.render(spec, h, w, t)
  r = O.score_video(video, prompt)
  assert r["permanence"] is True and r["all_right"]
  k0 = _first_touch(spec.objects[0], h, w, t)
  # The object goes behind the wall and never comes back.
  gone = video.copy()
  gone[k0:] = W.render(dataclasses.replace(spec, objects=spec.objects[1:]), h, w, t)[k0:]
  r = O.score_video(gone, prompt)
  assert r["permanence"] is False and not r["all_right"]
  # It comes back as another shape, or another size.
  for change in ({"shape": "circle"}, {"size": "large"}):
    swapped = video.copy()
    swapped[k0:] = W.render(_with(spec, 0, **change), h, w, t)[k0:]
    r = O.score_video(swapped, prompt)
    assert r["permanence"] is False and not r["all_right"], change
  # No wall asked: permanence does not apply.
  no_wall = dataclasses.replace(spec, wall=False)
  assert O.score_video(W.render(no_wall, h, w, t), _prompt(no_wall))["permanence"] is None


# ----------------------------------------------------------------------------------------------
# Garbage in: False out, never a crash
# ----------------------------------------------------------------------------------------------


def _garbage():
  rng = np.random.default_rng(0)
  yield "noise", rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
  yield "zeros", np.zeros((16, 64, 64, 3), np.uint8)
  yield "ones", np.full((16, 64, 64, 3), 255, np.uint8)
  blocks = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
  yield "blocky noise", blocks.repeat(8, 1).repeat(8, 2)
  yield "stripes", (np.arange(64) // 4 % 2 * 220).astype(np.uint8)[None, None, :, None].repeat(
      16, 0).repeat(64, 1).repeat(3, 3)
  yield "1x1x1", np.zeros((1, 1, 1, 3), np.uint8)
  yield "3x2x2", rng.integers(0, 256, (3, 2, 2, 3), dtype=np.uint8)
  yield "thin", rng.integers(0, 256, (4, 3, 200, 3), dtype=np.uint8)
  for name, c in [*W.OBJECT_COLORS.items(), *W.BACKGROUNDS.items(), ("wall", W.WALL_COLOR)]:
    yield f"constant {name}", np.broadcast_to(np.array(c, np.uint8), (8, 32, 48, 3)).copy()


def test_garbage_scores_false_without_crashing():
  prompts = [W.parse_terse("large red circle moving right and small blue square on a navy "
                           "background, behind a gray wall"),
             W.parse_terse("small white triangle falling on a black background"),
             W.parse_terse("large cyan diamond shrinking on a forest background")]
  for name, video in _garbage():
    for prompt in prompts:
      r = O.score_video(video, prompt)
      assert set(r) == set(O.CHECKS)
      assert r["all_right"] is False, name
      assert all(v is None or isinstance(v, bool) for v in r.values())


@pytest.mark.parametrize("video,match", [
    (np.zeros((4, 8, 8, 3), np.float32), "dtype uint8"),
    (np.zeros((4, 8, 8), np.uint8), r"\[T, H, W, 3\]"),
    (np.zeros((4, 8, 8, 4), np.uint8), r"\(4, 8, 8, 4\)"),
    (np.zeros((0, 8, 8, 3), np.uint8), "T, H, W >= 1"),
    ([[0]], "numpy uint8 array"),
])
def test_bad_input_raises_one_clear_error(video, match):
  with pytest.raises(ValueError, match=match):
    O.score_video(video, W.parse_terse("small red circle on a black background"))


def test_bad_spec_raises():
  video = np.zeros((4, 8, 8, 3), np.uint8)
  with pytest.raises(ValueError, match="spec must be"):
    O.score_video(video, 42)
  with pytest.raises(ValueError, match="purple"):
    O.score_video(video, "small purple circle on a black background")


def test_score_videos_rates():
  clip = W.make_clip(5, 0, 48, 80, 24)
  spec = _prompt(clip.spec)
  zeros = np.zeros_like(clip.video)
  rates = O.score_videos([clip.video, zeros, clip.video, zeros], [spec] * 4)
  assert rates["n"] == 4 and rates["all_right"] == 0.5 and rates["color"] == 0.5
  assert set(rates) == set(O.CHECKS) | {"n", "permanence_n"}
  with pytest.raises(ValueError, match="2 videos but 1 specs"):
    O.score_videos([zeros, zeros], [spec])


def test_permanence_rate_counts_only_clips_where_it_applies():
  h, w, t = 48, 80, 24
  crossing = _crossing_scene()
  plain = W.make_clip(5, 1, h, w, t, wall_prob=0.0)
  rates = O.score_videos([W.render(crossing, h, w, t), plain.video],
                         [_prompt(crossing), _prompt(plain.spec)])
  assert rates["permanence_n"] == 1 and rates["permanence"] == 1.0 and rates["all_right"] == 1.0


def test_classify_motion_on_ideal_tracks():
  h, w, t = 64, 64, 24
  starts = {"right": (0.2, 0.5), "left": (0.8, 0.5), "down": (0.5, 0.2), "up": (0.5, 0.8),
            "falling": (0.5, 0.2), "bouncing": (0.3, 0.3), "static": (0.5, 0.5),
            "growing": (0.5, 0.5), "shrinking": (0.5, 0.5)}
  for motion, start in starts.items():
    size = {"shrinking": "large"}.get(motion, "small")
    cx, cy, s = W.object_track(W.ObjectSpec("red", "circle", size, motion, start), h, w, t)
    inside = (cx - s / 2 > 0) & (cx + s / 2 < w) & (cy - s / 2 > 0) & (cy + s / 2 < h)
    k = np.flatnonzero(inside)
    assert O.classify_motion(k / W.FPS, cx[k], cy[k], s[k], t, h, w) == motion


# ----------------------------------------------------------------------------------------------
# sorax.evaluate.motion_confusion: what the oracle reads, per asked motion
# ----------------------------------------------------------------------------------------------


def test_motion_confusion_diagonal_on_ground_truth_and_reads_a_frozen_clip():
  from sorax.evaluate import motion_confusion
  clips = [W.make_clip(3, i, 32, 32, 17, max_objects=1) for i in range(24)]
  conf = motion_confusion([c.video for c in clips], [c.spec for c in clips])
  asked = [c.spec.objects[0].motion for c in clips]
  assert sum(row["n"] for row in conf.values()) == len(clips)
  for motion, row in conf.items():
    assert row["n"] == asked.count(motion)
    assert row["rate"] == 1.0 and row["read"] == {motion: row["n"]}, (motion, row)
  # Every frame replaced by the first: a mover reads static, not its motion; terse captions and
  # spec JSON are accepted like SceneSpecs.
  movers = [c for c in clips if c.spec.objects[0].motion in ("left", "right", "up", "down")]
  frozen = [np.repeat(c.video[:1], len(c.video), 0) for c in movers]
  conf = motion_confusion(frozen, [c.captions["terse"] for c in movers[:1]]
                          + [c.spec.to_json() for c in movers[1:]])
  for row in conf.values():
    assert row["rate"] == 0.0 and set(row["read"]) == {"static"}, row
  with pytest.raises(ValueError, match="2 videos but 1 specs"):
    motion_confusion(frozen[:2], [movers[0].spec])
