"""The spec-free describer (sorax/data/describe.py) and the `caption_policy` output check."""

import numpy as np
import pytest

from sorax.data import world
from sorax.data.describe import caption_video, describe_video
from sorax.safety.policy import Policy, PolicyViolation


def test_ground_truth_renders_are_read_back():
  """Colours, background and wall exactly; shape, size and motion for >= 95% of objects (a
  small diamond and a small circle can have the same pixels: WORLD.md's shapes at 5 px)."""
  rng = np.random.default_rng(0)
  right = total = 0
  for i in range(60):
    H, W, T = (32, 32, 17) if i % 2 else (64, 48, 17)
    spec = world.random_spec(rng, H, W, T)
    d = describe_video(world.render(spec, H, W, T))
    assert d.background == spec.background and d.wall == spec.wall
    seen = {o.color: (o.shape, o.size, o.motion) for o in d.objects}
    assert set(seen) == {o.color for o in spec.objects}
    for o in spec.objects:
      total += 1
      right += seen[o.color] == (o.shape, o.size, o.motion)
  assert right >= 0.95 * total, (right, total)


def test_caption_is_the_terse_caption_of_what_is_seen():
  spec = world.SceneSpec("navy", True, (
      world.ObjectSpec("red", "square", "large", "right", start=(0.2, 0.3)),
      world.ObjectSpec("cyan", "circle", "small", "growing", start=(0.8, 0.75))))
  video = world.render(spec, 64, 64, 17)
  d = describe_video(video)
  assert d.caption() == caption_video(video) == world.caption(spec, "terse", None)
  got = d.spec()
  assert world.parse_terse(d.caption()) == world.SceneSpec(
      got.background, got.wall, tuple(world.ObjectSpec(o.color, o.shape, o.size, o.motion)
                                      for o in got.objects))
  assert got.objects[0].start == pytest.approx((0.2, 0.3), abs=0.05)


def test_blank_and_noise_describe_without_crashing():
  blank = np.full((9, 32, 32, 3), 12, np.uint8)  # the black background
  d = describe_video(blank)
  assert d.objects == () and d.spec() is None
  assert d.caption() == "nothing on a black background"
  noise = np.random.default_rng(0).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
  assert isinstance(caption_video(noise), str)
  with pytest.raises(ValueError, match="uint8"):
    describe_video(blank.astype(np.float32))
  with pytest.raises(ValueError, match="shape"):
    describe_video(blank[0])


def test_caption_policy_holds_outputs_to_the_prompt_policy():
  """An output is refused when what it shows falls in a blocked category (here a test category
  that blocks the word 'magenta'), whatever the prompt said; other outputs pass."""
  pol = Policy.from_config({"output_checks": ["caption_policy"],
                            "categories": {"no_magenta": {"terms": ["magenta"]}}})
  shown = world.render(world.SceneSpec("black", False, (
      world.ObjectSpec("magenta", "circle", "large", "static", start=(0.5, 0.5)),)), 32, 32, 9)
  other = world.render(world.SceneSpec("black", False, (
      world.ObjectSpec("green", "circle", "large", "static", start=(0.5, 0.5)),)), 32, 32, 9)
  pol.check_output(other, {"prompt": "a large green circle"})
  with pytest.raises(PolicyViolation, match="caption_policy.*magenta.*'no_magenta'"):
    pol.check_output(shown, {"prompt": "a large green circle"})
