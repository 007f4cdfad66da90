"""The procedural world against shared/WORLD.md: colours, pixels, physics, specs, captions."""

import dataclasses
import json
import re
import time

import numpy as np
import pytest

from sorax.data import world as W

CANVASES = [(64, 64, 16), (48, 80, 24), (96, 64, 32), (32, 32, 8)]


def _obj(shape="square", size="small", motion="static", start=(0.5, 0.5), color="red", **kw):
  return W.ObjectSpec(color, shape, size, motion, start, **kw)


def _scene(*objects, background="black", wall=False):
  return W.SceneSpec(background, wall, tuple(objects))


def _specs(n, h, w, t, seed=0):
  rng = np.random.default_rng(seed)
  return [W.random_spec(rng, h, w, t) for _ in range(n)]


# ----------------------------------------------------------------------------------------------
# Colours and pixels
# ----------------------------------------------------------------------------------------------


def test_palette_is_exactly_world_md():
  assert W.OBJECT_COLORS == {
      "red": (220, 40, 40), "orange": (240, 140, 20), "yellow": (235, 220, 40),
      "green": (40, 190, 60), "cyan": (40, 210, 220), "blue": (40, 80, 230),
      "magenta": (210, 50, 210), "white": (240, 240, 240)}
  assert W.BACKGROUNDS == {"black": (12, 12, 12), "navy": (18, 24, 72), "forest": (16, 56, 30),
                           "maroon": (72, 18, 24)}
  assert W.WALL_COLOR == (128, 128, 128)
  assert W.FPS == 8


def test_render_uses_only_exact_palette_colours():
  spec = _scene(_obj("circle", "large", color="cyan", start=(0.3, 0.5)),
                _obj("triangle", color="yellow", start=(0.8, 0.3)), background="navy", wall=True)
  video = W.render(spec, 40, 60, 3)
  assert video.dtype == np.uint8 and video.shape == (3, 40, 60, 3)
  colours = {tuple(c) for c in video.reshape(-1, 3)}
  assert colours == {W.BACKGROUNDS["navy"], W.OBJECT_COLORS["cyan"], W.OBJECT_COLORS["yellow"],
                     W.WALL_COLOR}


def _mask(video, color):
  return (video == np.array(W.OBJECT_COLORS[color], np.uint8)).all(-1)


def test_pixel_centre_rule_hand_computed():
  # 50 x 50 canvas: small = 8 px, large = 16 px. Centre (25, 25).
  sq = W.render(_scene(_obj("square")), 50, 50, 1)[0]
  rows, cols = np.nonzero(_mask(sq[None], "red")[0])
  # Box [21, 29]: pixel centres 21.5 .. 28.5 -> rows/cols 21..28.
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (21, 28, 21, 28)
  assert len(rows) == 64
  # Centre (25.5, 25.5): box [21.5, 29.5] has pixel centres on both edges; boundary included.
  sq = _mask(W.render(_scene(_obj("square", start=(0.51, 0.51))), 50, 50, 1), "red")[0]
  rows, cols = np.nonzero(sq)
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (21, 29, 21, 29)
  # Triangle, large, centre (25, 25): apex (25, 17), base y = 33 from x = 17 to 33.
  tri = _mask(W.render(_scene(_obj("triangle", "large")), 50, 50, 1), "red")[0]
  widths = tri.sum(1)
  assert widths[17] == 0  # row centre 17.5: half-width 0.25, no pixel centre that close
  assert list(np.nonzero(tri[18])[0]) == [24, 25]  # half-width 0.75
  assert list(np.nonzero(tri[32])[0]) == list(range(17, 33))  # half-width 7.75
  assert widths[33] == 0 and widths.sum() == tri.sum()
  # Diamond: |dx| + |dy| <= 8.
  dia = _mask(W.render(_scene(_obj("diamond", "large")), 50, 50, 1), "red")[0]
  assert list(np.nonzero(dia[25])[0]) == list(range(17, 33))
  assert list(np.nonzero(dia[17])[0]) == [24, 25]
  assert dia[16].sum() == 0
  # Circle, r = 8: (17.5 - 25)^2 + 0.5^2 = 56.5 <= 64 -> in; row 17: 7.5^2 + 0.5^2 > 64 -> no
  # pixel in columns 17/32, but (24, 25) are in.
  cir = _mask(W.render(_scene(_obj("circle", "large")), 50, 50, 1), "red")[0]
  assert cir[25, 17] and cir[25, 32] and not cir[25, 16] and not cir[25, 33]
  assert not cir[17, 17] and cir[17, 24] and cir[17, 25]
  # Wall on W = 50: [21.25, 28.75] -> columns 21..28.
  assert list(np.nonzero(W.wall_columns(50))[0]) == list(range(21, 29))


def test_sizes():
  for h, w in [(50, 50), (48, 80), (96, 64)]:
    m = min(h, w)
    for size, frac in [("small", 0.16), ("large", 0.32)]:
      assert W.size_px(size, h, w) == pytest.approx(frac * m)
      sq = _mask(W.render(_scene(_obj("square", size)), h, w, 1), "red")[0]
      rows, cols = np.nonzero(sq)
      for extent in (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1):
        assert abs(extent - frac * m) <= 1


def test_later_objects_drawn_over_earlier_and_wall_over_all():
  a, b = _obj("square", "large", color="red"), _obj("circle", "small", color="blue")
  v = W.render(_scene(a, b), 50, 50, 1)
  assert tuple(v[0, 25, 25]) == W.OBJECT_COLORS["blue"]
  v = W.render(_scene(b, a), 50, 50, 1)
  assert tuple(v[0, 25, 25]) == W.OBJECT_COLORS["red"]
  v = W.render(_scene(a, b, wall=True), 50, 50, 1)
  assert tuple(v[0, 25, 25]) == W.WALL_COLOR


def test_render_is_fast():
  spec = _specs(1, 96, 64, 32)[0]
  W.render(spec, 96, 64, 32)
  t0 = time.perf_counter()
  for _ in range(10):
    W.render(spec, 96, 64, 32)
  assert (time.perf_counter() - t0) / 10 < 0.05  # a few ms on a laptop; slack for shared CI


# ----------------------------------------------------------------------------------------------
# Motions
# ----------------------------------------------------------------------------------------------


def test_linear_motions_move_half_a_canvas_per_second():
  h, w, t = 48, 80, 24
  for motion, axis, sign in [("left", 0, -1), ("right", 0, 1), ("up", 1, -1), ("down", 1, 1)]:
    cx, cy, s = W.object_track(_obj(motion=motion, start=(0.5, 0.5)), h, w, t)
    pos, other = (cx, cy) if axis == 0 else (cy, cx)
    dim = w if axis == 0 else h
    np.testing.assert_allclose(np.diff(pos), sign * 0.5 * dim / 8)
    np.testing.assert_allclose(other, other[0])
    np.testing.assert_allclose(s, 0.16 * 48)


def test_static_growing_shrinking():
  h, w, t = 64, 64, 16
  cx, cy, s = W.object_track(_obj(), h, w, t)
  assert np.ptp(cx) == np.ptp(cy) == np.ptp(s) == 0
  _, _, s = W.object_track(_obj(size="small", motion="growing"), h, w, t)
  np.testing.assert_allclose(s, np.linspace(0.16 * 64, 0.32 * 64, t))
  _, _, s = W.object_track(_obj(size="large", motion="shrinking"), h, w, t)
  np.testing.assert_allclose(s, np.linspace(0.32 * 64, 0.16 * 64, t))
  with pytest.raises(ValueError, match="growing"):
    _obj(size="large", motion="growing")


def test_bouncing_stays_inside_and_reflects():
  h, w, t = 48, 80, 200  # 25 s: many reflections
  for start, d in [((0.3, 0.3), None), ((0.7, 0.8), None), ((0.5, 0.5), (-1, 1))]:
    o = _obj("circle", "large", "bouncing", start=start, dir=d)
    cx, cy, s = W.object_track(o, h, w, t)
    half = s[0] / 2
    assert cx.min() >= half - 1e-9 and cx.max() <= w - half + 1e-9
    assert cy.min() >= half - 1e-9 and cy.max() <= h - half + 1e-9
    vx, vy = np.diff(cx) * 8, np.diff(cy) * 8
    # Away from reflections the speed is exactly 0.4 canvas/s per axis.
    assert np.isclose(np.abs(vx), 0.4 * w).mean() > 0.8
    assert np.isclose(np.abs(vy), 0.4 * h).mean() > 0.8
    assert (vx > 0).any() and (vx < 0).any() and (vy > 0).any() and (vy < 0).any()
    sx = d[0] if d else (1 if start[0] <= 0.5 else -1)
    sy = d[1] if d else (1 if start[1] <= 0.5 else -1)
    assert np.sign(vx[0]) == sx and np.sign(vy[0]) == sy


def _simulated_fall(y0, floor, g, times, dt=1e-5):
  """An independent, finely sub-stepped simulation of WORLD.md's falling rule."""
  y, v, out, now = y0, 0.0, [], 0.0
  for target in times:
    while now < target - 1e-12:
      v += g * dt
      y += v * dt
      if y >= floor:
        y, v = floor - (y - floor) * 0.6, -0.6 * v
      now += dt
    out.append(y)
  return np.array(out)


def test_falling_closed_form_matches_a_fine_simulation():
  h, w, t = 64, 64, 40  # 5 s: impact, bounces, rest
  o = _obj("circle", "small", "falling", start=(0.5, 0.2))
  cx, cy, s = W.object_track(o, h, w, t)
  floor = h - s[0] / 2
  sim = _simulated_fall(cy[0], floor, 2.0 * h, np.arange(t) / 8)
  np.testing.assert_allclose(cy, sim, atol=0.05)
  assert np.ptp(cx) == 0 and cy.max() <= floor + 1e-9
  # Accelerates from rest at 2 H/s^2 until the first impact.
  t1 = np.sqrt(2 * (floor - cy[0]) / (2.0 * h))
  pre = np.arange(t) / 8 < t1
  np.testing.assert_allclose(cy[pre], cy[0] + 0.5 * 2.0 * h * (np.arange(t)[pre] / 8) ** 2)
  # Rests on the floor after all bounces (4 * t1 for restitution 0.6).
  assert np.allclose(cy[np.arange(t) / 8 > 4 * t1 + 1e-6], floor)


def test_falling_bounce_keeps_60_percent_of_speed():
  h = 64
  o = _obj("square", "small", "falling", start=(0.5, 0.2))
  y0, floor, g = 0.2 * h, h - 0.16 * h / 2, 2.0 * h
  t1 = np.sqrt(2 * (floor - y0) / g)
  # Sample densely through the first bounce: its peak rises 0.6^2 of the drop height.
  frames = int(np.ceil(3 * t1 * 8)) + 1
  _, cy, _ = W.object_track(o, h, h, frames)
  after = cy[np.arange(frames) / 8 > t1]
  assert after.min() == pytest.approx(floor - 0.36 * (floor - y0), abs=0.6)
  assert W.object_track(o, h, h, 1)[1][0] == y0


def test_wall_hides_and_object_comes_back_the_same():
  h, w, t = 48, 80, 24
  o = _obj("diamond", "small", "right", start=(0.1, 0.5))
  spec = _scene(o, wall=True)
  video = W.render(spec, h, w, t)
  band = W.wall_columns(w)
  assert (video[:, :, band] == np.array(W.WALL_COLOR, np.uint8)).all()
  cx, _, s = W.object_track(o, h, w, t)
  counts = _mask(video, "red").sum((1, 2))
  hidden = (cx - s / 2 >= 0.425 * w) & (cx + s / 2 <= 0.575 * w)
  assert hidden.any() and (counts[hidden] == 0).all()
  before = (cx + s / 2 < 0.425 * w) & (cx - s / 2 > 0)
  after = (cx - s / 2 > 0.575 * w) & (cx + s / 2 < w)
  assert before.any() and after.any()
  # Same sub-pixel phase on both sides -> same pixel count; in general within a few pixels.
  assert abs(np.median(counts[before]) - np.median(counts[after])) <= 4


def test_render_needs_starts():
  spec = W.parse_terse("small red circle on a black background")
  with pytest.raises(ValueError, match="start"):
    W.render(spec, 32, 32, 4)


# ----------------------------------------------------------------------------------------------
# Specs
# ----------------------------------------------------------------------------------------------


def test_json_round_trip():
  for spec in _specs(200, 64, 64, 16):
    d = json.loads(json.dumps(spec.to_json()))
    assert W.SceneSpec.from_json(d) == spec
  spec = _scene(_obj(motion="bouncing", dir=(-1, 1)), _obj(color="blue"))
  d = spec.to_json()
  assert d["objects"][0]["dir"] == [-1, 1] and "dir" not in d["objects"][1]
  assert d == {"background": "black", "wall": False, "objects": [
      {"color": "red", "shape": "square", "size": "small", "motion": "bouncing",
       "start": [0.5, 0.5], "dir": [-1, 1]},
      {"color": "blue", "shape": "square", "size": "small", "motion": "static",
       "start": [0.5, 0.5]}]}
  parsed = W.parse_terse("small red circle on a black background")
  assert "start" not in parsed.to_json()["objects"][0]
  assert W.SceneSpec.from_json(parsed.to_json()) == parsed


@pytest.mark.parametrize("field,value,match", [
    ("color", "purple", "color 'purple'"), ("shape", "star", "shape 'star'"),
    ("size", "huge", "size 'huge'"), ("motion", "spinning", "motion 'spinning'"),
    ("start", [0.5], "start"), ("dir", [2, 1], "dir")])
def test_from_json_names_the_bad_field(field, value, match):
  d = _scene(_obj()).to_json()
  d["objects"][0][field] = value
  with pytest.raises(ValueError, match=re.escape(match)):
    W.SceneSpec.from_json(d)


def test_from_json_scene_level_errors():
  good = _scene(_obj()).to_json()
  with pytest.raises(ValueError, match="background 'pink'"):
    W.SceneSpec.from_json({**good, "background": "pink"})
  with pytest.raises(ValueError, match="duplicate color 'red'"):
    W.SceneSpec.from_json({**good, "objects": good["objects"] * 2})
  with pytest.raises(ValueError, match="0"):
    W.SceneSpec.from_json({**good, "objects": []})
  four = [{**good["objects"][0], "color": c} for c in ("red", "blue", "green", "white")]
  with pytest.raises(ValueError, match="4"):
    W.SceneSpec.from_json({**good, "objects": four})
  with pytest.raises(ValueError, match="missing field 'wall'"):
    W.SceneSpec.from_json({"background": "black", "objects": good["objects"]})
  with pytest.raises(ValueError, match="wall"):
    W.SceneSpec.from_json({**good, "wall": "yes"})
  assert W.SceneSpec.from_json({**good, "canvas": [64, 64, 16], "fps": 8}) == _scene(_obj())


def _boxes(spec, h, w):
  """Start boxes (x0, x1, y0, y1) in pixels, with the largest extent an object reaches."""
  out = []
  for o in spec.objects:
    s = W.size_px("large" if o.motion in ("growing", "shrinking") else o.size, h, w)
    x, y = o.start[0] * w, o.start[1] * h
    out.append((x - s / 2, x + s / 2, y - s / 2, y + s / 2))
  return out


@pytest.mark.parametrize("h,w,t", CANVASES)
def test_random_specs_follow_the_placement_rules(h, w, t):
  specs = _specs(300, h, w, t, seed=h + w + t)
  eps = 1e-9
  for spec in specs:
    assert 1 <= len(spec.objects) <= 3
    assert len({o.color for o in spec.objects}) == len(spec.objects)
    boxes = _boxes(spec, h, w)
    for o, (x0, x1, y0, y1) in zip(spec.objects, boxes):
      assert x0 >= -eps and x1 <= w + eps and y0 >= -eps and y1 <= h + eps  # fully inside
      if spec.wall:
        assert x1 <= 0.425 * w + eps or x0 >= 0.575 * w - eps  # clear of the wall band
      x, y = o.start
      third = {"right": x <= 1 / 3, "left": x >= 2 / 3, "down": y <= 1 / 3, "up": y >= 2 / 3,
               "falling": y <= 1 / 3}
      assert third.get(o.motion, True), (o, "starts in the wrong third")
      if o.motion in ("growing", "shrinking"):
        assert o.size == ("small" if o.motion == "growing" else "large")
    for i in range(len(boxes)):
      for j in range(i):
        a, b = boxes[i], boxes[j]
        gap_x = max(b[0] - a[1], a[0] - b[1]) / w
        gap_y = max(b[2] - a[3], a[2] - b[3]) / h
        assert max(gap_x, gap_y) >= 0.05 - eps
    # No two boxes overlap in more than a quarter of the clip.
    tracks = [W.object_track(o, h, w, t) for o in spec.objects]
    for i in range(len(tracks)):
      for j in range(i):
        (xa, ya, sa), (xb, yb, sb) = tracks[i], tracks[j]
        r = (sa + sb) / 2
        assert ((np.abs(xa - xb) < r) & (np.abs(ya - yb) < r)).sum() <= t / 4
  assert 0.15 < np.mean([s.wall for s in specs]) < 0.35
  assert {o.motion for s in specs for o in s.objects} == set(W.MOTIONS)
  assert {o.shape for s in specs for o in s.objects} == set(W.SHAPES)


def test_complete_spec_places_missing_starts_only():
  rng = np.random.default_rng(0)
  parsed = W.parse_terse("large red circle moving right and small blue square falling on a navy "
                         "background, behind a gray wall")
  done = W.complete_spec(parsed, rng, 64, 64, 16)
  assert all(o.start is not None for o in done.objects)
  assert [dataclasses.replace(o, start=None) for o in done.objects] == list(parsed.objects)
  red, blue = done.objects
  assert red.start[0] <= 1 / 3 and blue.start[1] <= 1 / 3
  fixed = dataclasses.replace(parsed, objects=(parsed.objects[0],
                                               dataclasses.replace(blue, start=(0.9, 0.1))))
  assert W.complete_spec(fixed, rng, 64, 64, 16).objects[1].start == (0.9, 0.1)
  # Scenes the rules cannot fit are still placed.
  crowded = W.parse_terse("large red square moving right and large blue square moving right and "
                          "large green square moving right on a black background, behind a gray "
                          "wall")
  assert all(o.start is not None for o in W.complete_spec(crowded, rng, 48, 80, 24).objects)
  W.render(W.complete_spec(crowded, rng, 48, 80, 24), 48, 80, 24)


def test_make_clip_is_deterministic():
  a, b = W.make_clip(3, 17, 48, 80, 24), W.make_clip(3, 17, 48, 80, 24)
  np.testing.assert_array_equal(a.video, b.video)
  assert a.spec == b.spec and a.captions == b.captions
  assert set(a.captions) == set(W.CAPTION_LEVELS)
  np.testing.assert_array_equal(a.video, W.render(a.spec, 48, 80, 24))
  c = W.make_clip(3, 18, 48, 80, 24)
  assert c.spec != a.spec
  assert W.make_clip(4, 17, 48, 80, 24).spec != a.spec


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------


def test_terse_caption_format():
  spec = _scene(_obj("circle", "large", "right", color="red"),
                _obj("diamond", "small", "falling", color="cyan"), background="navy", wall=True)
  assert W.caption(spec, "terse", np.random.default_rng(0)) == (
      "large red circle moving right and small cyan diamond falling on a navy background, "
      "behind a gray wall")
  assert W.caption(_scene(_obj()), "terse", None) == "small red square on a black background"


def test_terse_round_trip_over_random_specs():
  rng = np.random.default_rng(1)
  for h, w, t in CANVASES:
    for spec in _specs(250, h, w, t, seed=t):
      text = W.caption(spec, "terse", rng)
      expected = dataclasses.replace(
          spec, objects=tuple(dataclasses.replace(o, start=None, dir=None) for o in spec.objects))
      assert W.parse_terse(text) == expected
  assert W.parse_terse("  Small RED circle   on a black background. ") == W.parse_terse(
      "small red circle on a black background")


@pytest.mark.parametrize("text,part", [
    ("a red circle", "on a <background> background"),
    ("small purple circle on a black background", "small purple circle"),
    ("small red circle spinning on a black background", "small red circle spinning"),
    ("small red circle on a pink background", "pink"),
    ("large red circle growing on a black background", "growing"),
    ("small red circle and small red square on a black background", "duplicate color"),
])
def test_parse_terse_errors_name_the_problem(text, part):
  with pytest.raises(ValueError, match=re.escape(repr(text))) as e:
    W.parse_terse(text)
  assert part in str(e.value)


def _region_words(start):
  x, y = start
  return (["left", "center", "right"][min(2, int(x * 3))],
          ["top", "middle", "bottom"][min(2, int(y * 3))])


MOTION_STEMS = {"static": ("still", "not move", "in place"), "left": ("left",),
                "right": ("right",), "up": ("up", "rise"), "down": ("down", "sink"),
                "bouncing": ("bounc",), "falling": ("fall",), "growing": ("grow",),
                "shrinking": ("shrink",)}


def test_descriptive_captions_state_every_attribute():
  rng = np.random.default_rng(2)
  for spec in _specs(300, 64, 64, 16, seed=5):
    text = W.caption(spec, "descriptive", rng)
    low = text.lower()
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]
    assert 1 <= len(sentences) <= 4, text
    assert spec.background in low and "wall" in low
    if not spec.wall:
      assert "no wall" in low
    for o in spec.objects:
      phrase = f"{o.size} {o.color} {o.shape}"
      assert phrase in low, (phrase, text)
      i = low.index(phrase)
      clause = low[i:i + 160]  # the object's own clause: where it starts, how it moves
      for word in _region_words(o.start):
        assert word in clause, (word, text)
      assert any(s in clause for s in MOTION_STEMS[o.motion]), (o.motion, text)
      if spec.wall:
        assert "wall" in clause, text


def test_descriptive_captions_vary():
  spec = _specs(1, 64, 64, 16, seed=9)[0]
  texts = {W.caption(spec, "descriptive", np.random.default_rng(i)) for i in range(20)}
  assert len(texts) >= 5


def test_alt_captions_name_colours_and_shapes():
  rng = np.random.default_rng(3)
  texts = set()
  for spec in _specs(200, 64, 64, 16, seed=6):
    text = W.caption(spec, "alt", rng)
    texts.add(text)
    for o in spec.objects:
      assert f"{o.color} {o.shape}" in text
  assert len(texts) > 150
  with pytest.raises(ValueError, match="caption level"):
    W.caption(spec, "poem", rng)


def test_attribute_labels_state_what_each_caption_level_says():
  world = W
  from sorax.data.captions import NUM_SLOTS, SLOT_GROUPS, attribute_labels
  spec = world.SceneSpec("navy", True, (world.ObjectSpec("red", "circle", "large", "right"),
                                         world.ObjectSpec("blue", "square", "small", "static")))
  terse = attribute_labels(spec, "terse")
  assert terse.shape == (NUM_SLOTS, len(SLOT_GROUPS))
  colors = list(world.OBJECT_COLORS)
  assert list(terse[0, :4]) == [colors.index("red"), 0, 1, world.MOTIONS.index("right")]
  assert list(terse[1, :4]) == [colors.index("blue"), 1, 0, 0]
  assert terse[2, 0] == len(colors) and (terse[2, 1:] == -1).all()  # no third object
  assert list(terse[3, 4:]) == [list(world.BACKGROUNDS).index("navy"), 1]
  alt = attribute_labels(spec, "alt")  # colour and shape only
  assert (alt[:2, :2] == terse[:2, :2]).all() and (alt[:2, 2:] == -1).all()
  assert (alt[3] == -1).all()
  with pytest.raises(ValueError, match="unknown caption level"):
    attribute_labels(spec, "poem")
