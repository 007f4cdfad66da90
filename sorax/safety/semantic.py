"""The semantic prompt layer: a classifier over pretrained sentence embeddings (all-MiniLM-L6-v2,
sorax/models/minilm.py) that catches unsafe prompts the word list misses ("a twelve year old
posing without clothes", "the quickest method to end one's life").

A softmax regression over {benign} + the policy's categories is fitted, when the layer is first
used, on labelled exemplars: by default the training split of the project's labelled prompt set
(sorax/assets/policy_prompts.jsonl; its held-out split is what BUILD_NOTES.md reports, with
benchmarks/policy_eval.py). A prompt is refused for category c when the classifier gives c a
probability >= `threshold`. Fitting is deterministic (full-batch gradient descent from zeros),
so the same exemplars give the same decisions everywhere.

The encoder's package is optional: where it is missing, `build_layer` returns the reason and the
policy reports the semantic layer as off (never silently: every generation verb says so).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PROMPT_SET = pathlib.Path(__file__).resolve().parent.parent / "assets" / "policy_prompts.jsonl"
BENIGN = "benign"


def split_of(prompt: str) -> str:
  """The split rule of the labelled prompt set: "heldout" for one prompt in three, by the SHA-256
  of its UTF-8 text (int(hexdigest, 16) % 3 == 0), else "train". World captions (rows with
  "source": "world") are all "train". New rows must use this, so no row is placed by hand."""
  digest = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest(), 16)
  return "heldout" if digest % 3 == 0 else "train"


def load_prompt_set(path: str | pathlib.Path = PROMPT_SET,
                    split: str | None = None) -> list[dict[str, str]]:
  """The labelled prompt set: rows {"prompt", "label" (a category or "benign"), "split"
  ("train" | "heldout")}, optionally only one split."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"labelled prompt set {path} not found")
  rows = []
  for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
    if not line.strip():
      continue
    try:
      r = json.loads(line)
      if not isinstance(r.get("prompt"), str) or not isinstance(r.get("label"), str):
        raise ValueError("needs a string 'prompt' and 'label'")
    except (ValueError, AttributeError) as e:
      raise ValueError(f"{path}, line {i + 1}: {e}") from e
    if split is None or r.get("split", "train") == split:
      rows.append(r)
  return rows


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-4,
                steps: int = 2000, lr: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
  """Class-balanced softmax regression by full-batch gradient descent from zeros.
  x [N, D], y int [N] -> (w [D, K], b [K]). The defaults (and the settings' threshold 0.5)
  were chosen by 5-fold cross-validation on the training split only (BUILD_NOTES.md)."""
  n, d = x.shape
  counts = np.bincount(y, minlength=classes).astype(np.float64)
  if (counts == 0).any():
    raise ValueError(f"every class needs exemplars; counts {counts.astype(int).tolist()}")
  sample_w = (n / (classes * counts))[y] / n  # each class weighs the same in the loss
  onehot = np.eye(classes)[y]
  w, b = np.zeros((d, classes)), np.zeros(classes)
  x = x.astype(np.float64)
  for _ in range(steps):
    p = softmax(x @ w + b)
    g = (p - onehot) * sample_w[:, None]
    w -= lr * (x.T @ g + l2 * w)
    b -= lr * g.sum(0)
  return w.astype(np.float32), b.astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class Verdict:
  category: str | None  # the refused category, or None (allowed)
  score: float          # the highest unsafe-category probability
  top: str              # the category with that probability


def _check_threshold(threshold: float) -> None:
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"semantic threshold must be in (0, 1], got {threshold}")


class SemanticLayer:
  """embed(texts) -> [N, D] unit vectors; a fitted softmax head over (benign, *categories)."""

  def __init__(self, embed, categories: Sequence[str], exemplars: Sequence[tuple[str, str]],
               threshold: float = 0.5):
    _check_threshold(threshold)
    self.embed, self.threshold = embed, float(threshold)
    self.classes = (BENIGN, *categories)
    index = {c: i for i, c in enumerate(self.classes)}
    unknown = sorted({label for _, label in exemplars} - set(index))
    if unknown:
      raise ValueError(f"semantic exemplars have labels {unknown} that are not policy categories "
                       f"{list(categories)} or {BENIGN!r}")
    texts = [t for t, _ in exemplars]
    y = np.array([index[label] for _, label in exemplars])
    self.w, self.b = fit_softmax(embed(texts), y, len(self.classes))

  def with_threshold(self, threshold: float) -> SemanticLayer:
    """The same fitted head at another threshold (no re-embedding of the exemplars)."""
    _check_threshold(threshold)
    other = copy.copy(self)
    other.threshold = float(threshold)
    return other

  def probabilities(self, prompts: Sequence[str]) -> np.ndarray:
    """-> [N, 1 + categories], rows summing to 1 (column 0: benign)."""
    return softmax(self.embed(list(prompts)) @ self.w + self.b)

  def classify(self, prompts: Sequence[str]) -> list[Verdict]:
    out = []
    for p in self.probabilities(prompts):
      k = int(np.argmax(p[1:])) + 1
      score = float(p[k])
      out.append(Verdict(self.classes[k] if score >= self.threshold else None, score,
                         self.classes[k]))
    return out


@functools.lru_cache(maxsize=4)
def _encoder(model_path: str | None):
  from sorax.models.minilm import SentenceEncoder  # noqa: PLC0415
  return SentenceEncoder(model_path, max_len=128)


@functools.lru_cache(maxsize=8)
def _fitted_layer(model_path: str | None, categories: tuple[str, ...],
                  exemplars: tuple[tuple[str, str], ...]) -> SemanticLayer:
  return SemanticLayer(_encoder(model_path), categories, exemplars)


def _cached_layer(model_path: str | None, categories: tuple[str, ...],
                  exemplars: tuple[tuple[str, str], ...], threshold: float) -> SemanticLayer:
  """The head is fitted once per (encoder, categories, exemplars); thresholds share it."""
  _check_threshold(threshold)  # before any loading: a bad setting fails fast
  return _fitted_layer(model_path, categories, exemplars).with_threshold(threshold)


KEYS = ("enabled", "threshold", "exemplars", "split", "model")


def check_keys(cfg: Mapping[str, Any]) -> None:
  unknown = set(cfg) - set(KEYS)
  if unknown:
    raise ValueError(f"policy.semantic: unknown keys {sorted(unknown)}; known: {list(KEYS)}")


def build_layer(cfg: Mapping[str, Any], categories: Sequence[str]):
  """cfg: {"enabled", "threshold", "exemplars" (a labelled .jsonl; "" = the package's prompt
  set), "split" (its rows used: "train"), "model" (a MiniLM folder; "" = the installed
  package's)} -> (SemanticLayer | None, reason it is off | None). A layer is built (the encoder
  loaded, the head fitted) once per process for the same settings."""
  check_keys(cfg)
  if not cfg.get("enabled", True):
    return None, "disabled in the safety settings (policy.semantic.enabled=False)"
  from sorax.models.minilm import MiniLMMissing  # noqa: PLC0415
  rows = load_prompt_set(cfg.get("exemplars") or PROMPT_SET, cfg.get("split", "train") or None)
  # Exemplars of categories this policy does not have (a deployment dropped one) are not used.
  keep = set(categories) | {BENIGN}
  exemplars = tuple((r["prompt"], r["label"]) for r in rows if r["label"] in keep)
  try:
    layer = _cached_layer(cfg.get("model") or None, tuple(categories), exemplars,
                          float(cfg.get("threshold", 0.5)))
  except MiniLMMissing as e:
    return None, str(e)
  return layer, None
