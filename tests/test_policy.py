"""Content policy: a labeled prompt set (obfuscated variants included), world prompts pass,
config errors, output checks."""

import dataclasses
import json
import pathlib

import numpy as np
import pytest

from sorax.config import load_file
from sorax.data import world
from sorax.safety.policy import Policy, PolicyViolation, normalize
from sorax.safety.watermark import Watermark, payload

DATA = pathlib.Path(__file__).parent / "data" / "policy_prompts.jsonl"
SAFETY = str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "safety.py")


@pytest.fixture(scope="module")
def policy():
  return Policy.from_config(load_file(SAFETY).policy.to_dict())


def labeled():
  return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line]


def test_labeled_prompt_set(policy):
  """The word list alone (the semantic layer: tests/test_semantic_policy.py) gets every row."""
  policy = dataclasses.replace(policy, semantic=None)
  rows = labeled()
  assert sum(r["category"] is None for r in rows) >= 15 and len({r["category"] for r in rows}) >= 8
  wrong = []
  for r in rows:
    d = policy.check_prompt(r["prompt"])
    got = None if d.allowed else d.category
    if got != r["category"]:
      wrong.append((r["prompt"], r["category"], got, d.matched))
  assert not wrong, wrong


def test_every_world_caption_is_allowed(policy):
  """By the word list, at every caption level (the semantic layer on world captions:
  tests/test_semantic_policy.py, which embeds 150 of them; 900 here would take a minute)."""
  policy = dataclasses.replace(policy, semantic=None)
  rng = np.random.default_rng(0)
  caps = []
  for _ in range(300):
    spec = world.random_spec(rng, 32, 32, 9)
    caps += [world.caption(spec, level, rng) for level in ("terse", "descriptive", "alt")]
  decisions = policy.check_prompts(caps)
  assert all(d.allowed for d in decisions), [c for c, d in zip(caps, decisions) if not d.allowed]


@pytest.mark.parametrize("text,words", [
    ("N.U.D.E", ["nude"]), ("n u d e  art", ["nude", "art"]), ("nuuuude", ["nude"]),
    ("p0rn", ["porn"]), ("$ex", ["sex"]), ("n\u0430ked", ["naked"]),  # Cyrillic a
    ("nu\u200bde", ["nude"]), ("\u00f1ud\u00e9", ["nude"]), ("\uff4e\uff55\uff44\uff45", ["nude"]),
    ("a red circle", ["a", "red", "circle"]),
])
def test_normalize_undoes_obfuscation(text, words):
  assert normalize(text) == words


def test_refusal_names_the_category(policy):
  with pytest.raises(PolicyViolation, match="category 'graphic_violence'") as e:
    policy.enforce_prompt("a man being d3capitated")
  assert e.value.category == "graphic_violence"
  with pytest.raises(PolicyViolation, match="prompt 1: .*'self_harm'"):
    policy.enforce_prompts(["a red circle", "su1cide"])


def test_disabled_policy_allows_everything(policy):
  off = Policy(categories=policy.categories, enabled=False)
  assert off.check_prompt("nude").allowed


def test_config_errors():
  cfg = load_file(SAFETY).policy.to_dict()
  cfg["categories"]["sexual"]["weight"] = 2
  with pytest.raises(ValueError, match="unknown keys \\['weight'\\]"):
    Policy.from_config(cfg)
  cfg = load_file(SAFETY).policy.to_dict()
  cfg["output_checks"] = ["nsfw_classifier"]
  with pytest.raises(ValueError, match="unknown output checks \\['nsfw_classifier'\\]"):
    Policy.from_config(cfg)
  with pytest.raises(ValueError, match="no letters"):
    Policy.from_config({"categories": {"x": {"terms": ["-- ??"]}}})


def test_output_checks(policy, capsys):
  mark = Watermark()
  bits = payload(7, 9)
  video = world.render(world.random_spec(np.random.default_rng(1), 64, 64, 9), 64, 64, 9)
  ctx = {"prompt": "p", "watermark": mark, "payload": bits}
  policy.check_output(mark.embed(video, bits), ctx)  # marked: passes
  with pytest.raises(PolicyViolation, match="watermark does not read back"):
    policy.check_output(video, ctx)  # "marked" output that carries no mark
  # Below two tiles a side the mark is not guaranteed: written, with a notice.
  small = world.render(world.random_spec(np.random.default_rng(1), 32, 32, 9), 32, 32, 9)
  policy.check_output(small, ctx)
  assert "reads back weakly from a 32x32 output" in capsys.readouterr().err
  with pytest.raises(PolicyViolation, match="not a uint8 video"):
    policy.check_output(video.astype(np.float32), ctx)


class _Scores:
  """A stand-in semantic layer: a fixed top unsafe probability per prompt (category sexual)."""

  def __init__(self, scores):
    self.scores, self.asked = scores, []

  def classify(self, prompts):
    from sorax.safety.semantic import Verdict
    self.asked += list(prompts)
    return [Verdict("sexual" if self.scores[p] >= 0.5 else None, self.scores[p], "sexual")
            for p in prompts]


def test_review_terms_are_decided_by_the_semantic_layer(policy, monkeypatch):
  layer = _Scores({"naked mole rats in a tunnel": 0.01, "a naked man on a street": 0.3,
                   "a naked model posing": 0.9})
  monkeypatch.setattr(Policy, "semantic_layer", lambda self: (layer, None))
  assert policy.review_threshold() == 0.2  # the settings' value
  d = policy.check_prompts(["naked mole rats in a tunnel", "a naked man on a street",
                            "a naked model posing", "p0rn scene", "n4ked mole rats",
                            "n a k e d mole rats"])
  assert d[0].allowed and d[0].score == 0.01
  assert (not d[1].allowed and d[1].layer == "review" and d[1].category == "sexual"
          and d[1].term == "naked" and d[1].score == 0.3)
  assert not d[2].allowed and d[2].layer == "semantic"
  # A term refuses on sight; a review term written in disguise too: neither is asked about.
  assert [(x.allowed, x.layer) for x in d[3:]] == [(False, "lexical")] * 3
  assert layer.asked == ["naked mole rats in a tunnel", "a naked man on a street",
                         "a naked model posing"]
  with pytest.raises(PolicyViolation, match="matched 'naked' and the semantic classifier "
                                            "scores it 0.30"):
    policy.enforce_prompt("a naked man on a street")


def test_review_terms_refuse_where_the_semantic_layer_is_off(policy):
  off = dataclasses.replace(policy, semantic=None)
  d = off.check_prompt("naked mole rats in a tunnel")
  assert not d.allowed and d.layer == "lexical" and d.term == "naked"
  # Every review term is in the word list when the layer is off, and each reads plainly.
  cats = load_file(SAFETY).policy.categories
  review = [(n, t) for n, c in cats.items() for t in c.get("review_terms", ())]
  assert len(review) >= 10
  for name, term in review:
    text = f"a {term.rstrip('*').replace('&', '')} scene"
    assert off.check_prompt(text).category == name, term
    assert policy.lexical_hits([text])[0][1] is not None, term  # a review hit, not a term's


def test_review_threshold_is_checked():
  cfg = load_file(SAFETY).policy.to_dict()
  cfg["semantic"]["review_threshold"] = 1.5
  with pytest.raises(ValueError, match="review_threshold must be in \\[0, 1\\]"):
    Policy.from_config(cfg)
