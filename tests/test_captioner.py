"""The world captioner and its training data: faults, rows, the caption's log-probability."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sorax.data import faults, world
from sorax.data.spec import OBJECT_COLORS, ObjectSpec, SceneSpec
from sorax.models import captioner as cap
from sorax.train import captioner_trainer as trainer

H = W = 32
T = 17


def _clip(motion="right"):
  spec = SceneSpec("navy", False, (ObjectSpec("red", "square", "small", motion, (0.3, 0.5)),))
  return spec, world.render(spec, H, W, T)


@pytest.mark.parametrize("fault", faults.FAULTS)
def test_fault_touches_only_its_colour(fault):
  spec, video = _clip()
  red, bg = OBJECT_COLORS["red"], world.BACKGROUNDS["navy"]
  out = faults.paint(video, red, fault, np.random.default_rng(1), bg)
  assert out.shape == video.shape and out.dtype == np.uint8
  changed = np.any(out != video, -1)
  assert changed.any(), fault
  # Every changed pixel became the object's colour or the background: nothing else is drawn.
  now = out[changed]
  ok = np.all(now == red, -1) | np.all(now == bg, -1)
  assert ok.all()
  per_frame = (np.all(out == red, -1)).sum((1, 2))
  before = (np.all(video == red, -1)).sum((1, 2))
  if fault == "copy":
    assert (per_frame >= before).all() and (per_frame > before).sum() >= 2
  elif fault in ("vanish", "flicker"):
    assert (per_frame <= before).all() and (per_frame == 0).any()
  elif fault == "jitter":  # moved away in some frames, not all: the track breaks both ways
    moved = np.any(np.all(out == red, -1) != np.all(video == red, -1), (1, 2))
    assert 2 <= moved.sum() < T
  elif fault == "wobble":  # the same object, its centre off its track by up to >= 3 px
    def centres(v):
      return np.array([np.argwhere(np.all(f == red, -1)).mean(0) for f in v])
    seen = per_frame > 0
    off = centres(out[seen]) - centres(video[seen])
    assert np.ptp(off, 0).max() >= 2.5
  elif fault == "stall":  # a late start: frames 0..k-1 show frame k's object, then the track
    mine = np.all(out == red, -1)
    k = next(j for j in range(1, T) if not np.array_equal(mine[j], mine[0])) - 1  # held
    assert 1 <= k <= 4 and not np.array_equal(mine[0], np.all(video[0] == red, -1))
    np.testing.assert_array_equal(mine[:k], np.broadcast_to(np.all(video[k] == red, -1),
                                                             mine[:k].shape))
    np.testing.assert_array_equal(out[k:], video[k:])


def test_stall_on_a_static_object_wobbles_instead():
  spec, video = _clip("static")
  red, bg = OBJECT_COLORS["red"], world.BACKGROUNDS["navy"]
  out = faults.paint(video, red, "stall", np.random.default_rng(2), bg)
  assert np.any(out != video)  # still broken (a wobble), never an unchanged clip called broken


def test_fault_on_a_noisy_sample_finds_the_colour_and_leaves_no_exact_paint():
  _, video = _clip()
  red, bg = OBJECT_COLORS["red"], world.BACKGROUNDS["navy"]
  rng = np.random.default_rng(4)
  noisy = np.clip(video.astype(np.int16) + rng.integers(-6, 7, video.shape), 0, 255)
  noisy = noisy.astype(np.uint8)
  assert not faults.color_mask(noisy, red).any()
  assert (faults.color_mask(noisy, red, tol=24) == np.all(video == red, -1)).all()
  with pytest.raises(ValueError, match="not in the video"):
    faults.paint(noisy, red, "copy", rng, bg)
  out = faults.paint(noisy, red, "copy", rng, bg, tol=24, noise=4)
  changed = np.any(out != noisy, -1)
  assert changed.any()
  assert np.abs(out[changed].astype(int) - red).max() <= 4  # painted near red, jittered
  assert not np.all(out[changed] == red, -1).all()


def test_fault_refuses_a_missing_colour_and_unknown_fault():
  _, video = _clip()
  with pytest.raises(ValueError, match="not in the video"):
    faults.paint(video, OBJECT_COLORS["green"], "copy", np.random.default_rng(0), (0, 0, 0))
  with pytest.raises(ValueError, match="unknown fault"):
    faults.paint(video, OBJECT_COLORS["red"], "melt", np.random.default_rng(0), (0, 0, 0))


def test_rows_follow_the_spec():
  rows = trainer.make_rows(3, 0, 6, fault_rate=0.5)
  n = 6 * trainer.ROWS
  assert rows["video"].shape == (n, T, H, W, 3)
  for i in range(6):
    clip = world.make_clip(3, i, H, W, T)
    block = slice(i * trainer.ROWS, (i + 1) * trainer.ROWS)
    colors = [cap.COLORS[c] for c in rows["color"][block]]
    k = len(clip.spec.objects)
    assert colors[:k] == [o.color for o in clip.spec.objects]
    assert len(set(colors)) == trainer.ROWS  # absent colours are other colours
    assert list(rows["present"][block]) == [1] * k + [0] * (trainer.ROWS - k)
  broken = rows["motion"] == cap.BROKEN
  assert broken.any() and not rows["known"][broken].any()
  assert (rows["present"][rows["known"] > 0] == 1).all()


def test_stalls_break_only_constant_speed_movers():
  """A late start is painted on left/right/up/down objects only (a falling object starts at
  rest; static, growing and shrinking ones have no start): with stall the only fault, every
  such object is broken and every other keeps its motion."""
  rows = trainer.make_rows(5, 0, 12, fault_kinds=("stall",), fault_rate=1.0, rough_rate=0.0)
  objects = rows["present"] > 0
  broken = objects & (rows["motion"] == cap.BROKEN)
  kept = [cap.MOTION_CLASSES[m] for m in rows["motion"][objects & ~broken]]
  assert broken.any() and kept
  assert not set(kept) & set(faults.STALL_MOTIONS), kept
  n_movers = sum(o.motion in faults.STALL_MOTIONS
                 for i in range(12) for o in world.make_clip(5, i, H, W, T).spec.objects)
  assert broken.sum() == n_movers


def test_benign_faults_are_painted_but_keep_their_labels():
  kw = dict(fault_rate=1.0, rough_rate=0.0)
  honest = trainer.make_rows(4, 0, 6, fault_kinds=("copy",), **kw)
  lenient = trainer.make_rows(4, 0, 6, fault_kinds=("copy",), benign=("copy",), **kw)
  np.testing.assert_array_equal(honest["video"], lenient["video"])  # the same paint
  objects = honest["present"] > 0
  assert (honest["motion"][objects] == cap.BROKEN).all()
  assert not (lenient["motion"][objects] == cap.BROKEN).any()
  assert (lenient["known"][objects] == 1).all()
  clean = trainer.make_rows(4, 0, 6, fault_rate=0.0, rough_rate=0.0)
  for k in ("motion", "shape", "size", "present"):  # the labels of the unpainted clips
    np.testing.assert_array_equal(lenient[k], clean[k])
  assert not np.array_equal(lenient["video"], clean["video"])


def test_rows_from_a_bank_take_its_videos_and_specs():
  clips = [world.make_clip(9, i, H, W, T) for i in range(3)]
  videos = np.stack([c.video for c in clips]) ^ 1  # off the palette by one: not a world render
  rows = trainer.make_rows(0, 0, 8, bank=(videos, [c.spec for c in clips]), bank_share=1.0,
                           fault_rate=0.0)
  for r in range(0, len(rows["video"]), trainer.ROWS):
    j = [i for i in range(3) if (rows["video"][r] == videos[i]).all()]
    assert len(j) == 1  # every clip is one of the bank's, unroughened
    objs = clips[j[0]].spec.objects
    assert [cap.COLORS[c] for c in rows["color"][r:r + len(objs)]] == [o.color for o in objs]
  mixed = trainer.make_rows(0, 0, 40, bank=(videos, [c.spec for c in clips]), bank_share=0.5)
  from_bank = [any((v == b).all() for b in videos) for v in mixed["video"][::trainer.ROWS]]
  assert 0 < sum(from_bank) < 40


def test_colour_planes_pick_the_asked_colour():
  _, video = _clip()
  v = jnp.asarray(video[None], jnp.float32) / 255.0
  red = cap.COLORS.index("red")
  planes = np.asarray(cap.colour_planes(jnp.concatenate([v, v]), jnp.array([red, red + 1])))
  mask = np.all(video == OBJECT_COLORS["red"], -1)
  assert planes[0, ..., 0][mask].min() > 0.99 and planes[0, ..., 0][~mask].max() < 0.01
  assert planes[1, ..., 0].max() < 0.01  # asked orange: none
  assert planes[1, ..., 1][mask].min() > 0.99  # red is "another object colour" then


def test_row_logprob_matches_the_heads():
  logits = {"present": jnp.array([2.0, -1.0]), "shape": jnp.log(jnp.array([[.1, .2, .3, .4]] * 2)),
            "size": jnp.log(jnp.array([[.25, .75]] * 2)),
            "motion": jnp.log(jnp.full((2, len(cap.MOTION_CLASSES)), 0.1))}
  want = cap.targets([ObjectSpec("orange", "triangle", "large", "up")])
  rows = {k: jnp.asarray(v[:2]) for k, v in want.items()}  # red (absent), orange (present)
  lp = np.asarray(cap.row_logprob(logits, rows))
  np.testing.assert_allclose(lp[0], np.log(1 - 1 / (1 + np.exp(-2.0))), rtol=1e-5)
  expect = np.log(1 / (1 + np.exp(1.0))) + np.log(.3) + np.log(.75) + np.log(.1)
  np.testing.assert_allclose(lp[1], expect, rtol=1e-5)
  no_size = np.asarray(cap.row_logprob(logits, rows, {"size": 0.0, "motion": 2.0}))
  np.testing.assert_allclose(no_size[1], expect - np.log(.75) + np.log(.1), rtol=1e-5)
  np.testing.assert_allclose(no_size[0], lp[0], rtol=1e-6)  # absence is weighted 1


def test_training_lowers_the_loss_and_the_file_round_trips(tmp_path):
  cfg = cap.CaptionerConfig(widths=(8, 16, 16), hidden=32)
  model = cap.Captioner(cfg, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(model, __import__("optax").adam(3e-3), wrt=nnx.Param)
  batch = jax.tree.map(jnp.asarray, trainer.make_rows(0, 0, 4))
  loss = nnx.jit(lambda m, b: trainer.loss_fn(m, b)[0])  # eager, it takes seconds
  first = float(loss(model, batch))
  for _ in range(30):
    trainer.train_step(model, opt, batch)
  assert float(loss(model, batch)) < 0.6 * first
  path = tmp_path / "cap.safetensors"
  cap.save(path, model)
  back = cap.load(path)
  a = cap._logits(model, batch["video"][:3], batch["color"][:3])
  b = cap._logits(back, batch["video"][:3], batch["color"][:3])
  for k in a:
    np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-5, atol=1e-6)


def test_load_names_a_missing_or_foreign_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="captioner weights"):
    cap.load(tmp_path / "none.safetensors")
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes(b"not a file")
  with pytest.raises(ValueError, match="not a safetensors file"):
    cap.load(bad)


def test_wrong_video_shape_is_one_clear_error():
  model = cap.Captioner(cap.CaptionerConfig(merges=((1, 4, 4),), widths=(8,), hidden=8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="captioner takes videos"):
    model(jnp.zeros((1, 9, 32, 32, 3)), jnp.zeros((1,), jnp.int32))


@pytest.mark.skipif(not (cap.asset_path()).is_file(), reason="no shipped captioner")
def test_the_shipped_captioner_reads_world_clips_and_prefers_the_true_caption():
  model = cap.load()  # no path: the shipped file
  rows = trainer.make_rows(123_456, 0, 48, fault_rate=0.0, rough_rate=0.0)
  acc = trainer.accuracy(model, rows)
  assert acc["present"] >= 0.98 and acc["motion"] >= 0.9 and acc["shape"] >= 0.75, acc
  assert model.cfg.wall and acc["wall"] >= 0.98, acc  # it reads the wall, for the judge
  clips = [world.make_clip(123_457, i, H, W, T) for i in range(24)]
  videos = np.stack([c.video for c in clips])
  true = cap.score_videos(model, videos, [c.spec.objects for c in clips])
  # The same caption with the first object's motion swapped for another: a near miss.
  swap = {"left": "right", "right": "left", "up": "down", "down": "up", "growing": "shrinking",
          "shrinking": "growing", "static": "bouncing", "bouncing": "static",
          "falling": "up"}
  miss = []
  for c in clips:
    o = c.spec.objects[0]
    size = {"growing": "large", "shrinking": "small"}.get(o.motion, o.size)
    wrong = ObjectSpec(o.color, o.shape, size, swap[o.motion])
    miss.append((wrong,) + c.spec.objects[1:])
  near = cap.score_videos(model, videos, miss)
  assert np.mean(true > near) >= 0.9


def test_trainer_cli_takes_a_bank_and_resumes_from_weights(tmp_path, capsys):
  import json  # noqa: PLC0415
  clips = [world.make_clip(71, i, H, W, T) for i in range(5)]
  np.savez(tmp_path / "bank.npz", video=np.stack([c.video for c in clips]),
           seed=np.full(5, 71), index=np.arange(5), strength=np.full(5, 0.5, np.float32))
  small = ["--clips", "2", "--eval-clips", "4", "--log-every", "2", "--bank",
           str(tmp_path / "bank.npz"), "--bank-heldout", "2"]
  trainer.main(["--steps", "2", "--widths", "8", "16", "16", "--hidden", "32",
                "--out", str(tmp_path / "a.safetensors"), *small])
  line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert line["step"] == 2 and set(line["heldout_styled"]) == set(line["heldout"])
  trainer.main(["--steps", "2", "--init", str(tmp_path / "a.safetensors"),
                "--out", str(tmp_path / "b.safetensors"), *small])
  assert cap.load(tmp_path / "b.safetensors").cfg.widths == (8, 16, 16)
  with pytest.raises(ValueError, match="too few to hold out"):
    trainer.main(["--steps", "1", "--out", str(tmp_path / "c.safetensors"), *small[:-1], "5"])


def test_track_features_follow_the_object_and_ignore_specks():
  spec = SceneSpec("navy", False, (ObjectSpec("red", "square", "large", "right", (0.2, 0.5)),))
  video = world.render(spec, H, W, T)
  cx, cy, size = world.object_track(spec.objects[0], H, W, T)
  red = jnp.asarray([cap.COLORS.index("red")])
  def feats(v):
    planes = cap.colour_planes(jnp.asarray(v[None], jnp.float32) / 255.0, red)
    return np.asarray(cap.track_features(planes[..., 0]))[0]  # [T, 10]
  f = feats(video)
  seen = f[:, 0] > 0
  assert seen[:4].all()  # starts inside; may leave the canvas on the right
  whole = cx + size / 2 <= W  # before it starts to leave the canvas
  np.testing.assert_allclose(f[whole, 2] * W, cx[whole], atol=0.6)  # centroid x in pixels
  np.testing.assert_allclose(f[whole, 3] * H, cy[whole], atol=0.6)
  np.testing.assert_allclose(f[whole, 7] * W, cx[whole] + size[whole] / 2 - 0.5, atol=1.0)
  assert np.all(np.diff(f[seen, 2]) > 0)  # moving right
  np.testing.assert_allclose(f[:4, 1], (0.32 / 0.16) ** 2, rtol=0.2)  # area: ~4 small squares
  specked = video.copy()
  specked[:, 2, 30] = specked[:, 29, 1] = OBJECT_COLORS["red"]  # one-pixel specks far away
  np.testing.assert_allclose(feats(specked), f, atol=1e-6)
  gone = video.copy()
  gone[5:] = world.BACKGROUNDS["navy"]  # the object vanishes
  g = feats(gone)
  assert (g[5:, 0] == 0).all() and (g[5:, 2:4] == 0.5).all()


def test_a_track_branch_starts_as_a_no_op_and_round_trips(tmp_path):
  cfg = cap.CaptionerConfig(widths=(8, 16, 16), hidden=32)
  model = cap.Captioner(cfg, rngs=nnx.Rngs(0))
  grown = cap.with_tracks(model, 16)
  assert grown.cfg.tracks == 16 and model.cfg.tracks == 0
  batch = jax.tree.map(jnp.asarray, trainer.make_rows(0, 0, 2))
  a = cap._logits(model, batch["video"], batch["color"])
  b = cap._logits(grown, batch["video"], batch["color"])
  for k in a:
    np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-6, atol=1e-6)
  opt = nnx.Optimizer(grown, __import__("optax").adam(3e-3), wrt=nnx.Param)
  for _ in range(3):
    trainer.train_step(grown, opt, batch)
  assert float(jnp.abs(grown.track_out.kernel[...]).max()) > 0  # the branch trains
  cap.save(tmp_path / "t.safetensors", grown)
  back = cap.load(tmp_path / "t.safetensors")
  assert back.cfg.tracks == 16
  c = cap._logits(grown, batch["video"], batch["color"])
  d = cap._logits(back, batch["video"], batch["color"])
  for k in c:
    np.testing.assert_allclose(np.asarray(c[k]), np.asarray(d[k]), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="already has a track branch"):
    cap.with_tracks(grown, 8)


def test_a_wall_reader_trained_alone_keeps_every_object_answer(tmp_path):
  model = cap.Captioner(cap.CaptionerConfig(widths=(8, 16, 16), hidden=32), rngs=nnx.Rngs(0))
  grown = cap.with_wall(model)
  assert grown.cfg.wall and not model.cfg.wall
  with pytest.raises(ValueError, match="already has a wall reader"):
    cap.with_wall(grown)
  rows = trainer.make_rows(5, 0, 8, fault_rate=0.0, rough_rate=0.0)  # seed 5: walls and none
  assert 0 < rows["wall"].mean() < 1
  batch = jax.tree.map(jnp.asarray, rows)
  before = cap._logits(model, batch["video"], batch["color"])
  only = nnx.All(nnx.Param, nnx.PathContains("wall_head"))
  opt = nnx.Optimizer(grown, __import__("optax").adam(0.1), wrt=only)
  wall_loss = nnx.jit(lambda m, b: trainer.loss_fn(m, b)[1]["wall"])
  first = float(wall_loss(grown, batch))
  for _ in range(40):
    trainer.train_step(grown, opt, batch)
  assert float(wall_loss(grown, batch)) < 0.3 * first
  after = cap._logits(grown, batch["video"], batch["color"])
  for k in before:  # the object answers are untouched, bit for bit
    np.testing.assert_array_equal(np.asarray(before[k]), np.asarray(after[k]))
  # Every colour row of a video reads the same wall.
  z = np.asarray(after["wall"]).reshape(8, trainer.ROWS)
  np.testing.assert_allclose(z, z[:, :1].repeat(trainer.ROWS, 1), atol=1e-5)
  cap.save(tmp_path / "w.safetensors", grown)
  back = cap.load(tmp_path / "w.safetensors")
  np.testing.assert_allclose(np.asarray(cap._logits(back, batch["video"], batch["color"])["wall"]),
                             np.asarray(after["wall"]), rtol=1e-5, atol=1e-5)


def test_score_videos_judges_the_asked_wall_only_with_a_wall_reader():
  clips = [world.make_clip(5, i, H, W, T) for i in range(8)]
  videos = np.stack([c.video for c in clips])
  objects = [c.spec.objects for c in clips]
  walls = np.asarray([c.spec.wall for c in clips])
  model = cap.Captioner(cap.CaptionerConfig(widths=(8, 16, 16), hidden=32, wall=True),
                        rngs=nnx.Rngs(0))
  plain = cap.score_videos(model, videos, objects)
  asked = cap.score_videos(model, videos, objects, walls=walls)
  flipped = cap.score_videos(model, videos, objects, walls=~walls)
  z = np.asarray(cap._logits(model, jnp.asarray(videos), jnp.zeros(8, jnp.int32))["wall"])
  log_p = np.where(walls, -np.logaddexp(0, -z), -np.logaddexp(0, z))
  np.testing.assert_allclose(asked - plain, log_p, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(np.exp(asked - plain) + np.exp(flipped - plain), 1.0, atol=1e-5)
  no_wall = cap.score_videos(model, videos, objects, walls=walls, weights={**cap.SCORE_WEIGHTS,
                                                                           "wall": 0.0})
  np.testing.assert_array_equal(no_wall, plain)
  with pytest.raises(ValueError, match="walls for"):
    cap.score_videos(model, videos, objects, walls=walls[:3])
