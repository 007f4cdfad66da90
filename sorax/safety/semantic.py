"""The semantic prompt layer: a classifier over pretrained sentence embeddings (all-MiniLM-L6-v2,
sorax/models/minilm.py) that catches unsafe prompts the word list misses ("a twelve year old
posing without clothes", "the quickest method to end one's life").

A softmax head over {benign} + the policy's categories reads the sentence embedding; a prompt is
refused for category c when the head gives c a probability >= `threshold`. By default the
encoder's last three transformer layers and the head are the fine-tuned ones shipped in
sorax/assets/policy_minilm_top.safetensors (`tuned`; sorax/safety/semantic_tune.py rebuilds it
exactly), trained on the training split of the project's labelled prompt set
(sorax/assets/policy_prompts.jsonl; its held-out split is what benchmarks/policy_eval.py
reports). The shipped head is used only for exactly the exemplars and classes it was trained on;
for other exemplars (a deployment's own set, or a category dropped) a softmax regression is
fitted on them when the layer is first used (deterministic: full-batch gradient descent from
zeros), over the tuned encoder's embeddings, or the pretrained encoder's with `tuned="off"`.

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


def exemplars_of(rows: Sequence[Mapping[str, str]],
                 categories: Sequence[str]) -> tuple[tuple[str, str], ...]:
  """(prompt, label) of the rows whose label is benign or one of `categories` (exemplars of a
  category the policy does not have, because a deployment dropped it, are not used)."""
  keep = set(categories) | {BENIGN}
  return tuple((r["prompt"], r["label"]) for r in rows if r["label"] in keep)


def default_exemplars(categories: Sequence[str]) -> tuple[tuple[str, str], ...]:
  """The default settings' exemplars: the package prompt set's training split."""
  return exemplars_of(load_prompt_set(PROMPT_SET, "train"), categories)


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-4,
                steps: int = 2000, lr: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
  """Class-balanced softmax regression by full-batch gradient descent from zeros.
  x [N, D], y int [N] -> (w [D, K], b [K]). The defaults (and the threshold 0.5 this head
  was used at) were chosen by 5-fold cross-validation on the training split only; the settings'
  0.3 is the fine-tuned head's, trained with a heavier benign class (BUILD_NOTES.md)."""
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
  """embed(texts) -> [N, D] unit vectors; a softmax head over (benign, *categories): `tuned`'s
  (a semantic_tune.TunedTop) when it was trained on exactly these classes and exemplars
  (head_source "tuned"), else fitted on the exemplars here (head_source "fitted")."""

  def __init__(self, embed, categories: Sequence[str], exemplars: Sequence[tuple[str, str]],
               threshold: float = 0.5, tuned=None):
    _check_threshold(threshold)
    self.embed, self.threshold = embed, float(threshold)
    self.classes = (BENIGN, *categories)
    index = {c: i for i, c in enumerate(self.classes)}
    unknown = sorted({label for _, label in exemplars} - set(index))
    if unknown:
      raise ValueError(f"semantic exemplars have labels {unknown} that are not policy categories "
                       f"{list(categories)} or {BENIGN!r}")
    if tuned is not None and tuned.classes == self.classes:
      from sorax.safety.semantic_tune import exemplar_digest  # noqa: PLC0415
      if tuned.exemplars_sha256 == exemplar_digest(self.classes, exemplars):
        self.w, self.b, self.head_source = tuned.w, tuned.b, "tuned"
        return
    texts = [t for t, _ in exemplars]
    y = np.array([index[label] for _, label in exemplars])
    self.w, self.b = fit_softmax(embed(texts), y, len(self.classes))
    self.head_source = "fitted"

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
def _encoder(model_path: str | None, tuned: str | None):
  """-> (SentenceEncoder, semantic_tune.TunedTop | None): the pretrained MiniLM, with its last
  layer replaced by `tuned`'s (a path) when given."""
  from sorax.models.minilm import SentenceEncoder, model_dir  # noqa: PLC0415
  encoder = SentenceEncoder(model_path, max_len=128)
  if tuned is None:
    return encoder, None
  from sorax.models import weights  # noqa: PLC0415
  from sorax.safety import semantic_tune  # noqa: PLC0415
  top = semantic_tune.load(tuned, base=encoder.model)
  folder = model_dir() if model_path is None else pathlib.Path(model_path)
  if top.base_sha256 != weights.file_sha256(folder / "model.safetensors"):
    raise ValueError(f"policy.semantic.tuned: {tuned} was fine-tuned from another MiniLM than "
                     f"{folder}; set policy.semantic.tuned='off' or rebuild it "
                     f"(python -m sorax.safety.semantic_tune)")
  semantic_tune.set_top_params(encoder.model, semantic_tune.as_layers(top.layer))
  encoder.refresh()
  return encoder, top


@functools.lru_cache(maxsize=8)
def _fitted_layer(model_path: str | None, tuned: str | None, categories: tuple[str, ...],
                  exemplars: tuple[tuple[str, str], ...]) -> SemanticLayer:
  encoder, top = _encoder(model_path, tuned)
  return SemanticLayer(encoder, categories, exemplars, tuned=top)


def _cached_layer(model_path: str | None, tuned: str | None, categories: tuple[str, ...],
                  exemplars: tuple[tuple[str, str], ...], threshold: float) -> SemanticLayer:
  """The head is fitted (or taken from `tuned`) once per (encoder, categories, exemplars);
  thresholds share it."""
  _check_threshold(threshold)  # before any loading: a bad setting fails fast
  return _fitted_layer(model_path, tuned, categories, exemplars).with_threshold(threshold)


def tuned_path(value: str | None) -> str | None:
  """policy.semantic.tuned -> a file path, or None for the pretrained encoder ("off")."""
  if value in (None, ""):
    from sorax.safety.semantic_tune import ASSET  # noqa: PLC0415
    return str(ASSET)
  return None if str(value).lower() == "off" else str(value)


KEYS = ("enabled", "threshold", "review_threshold", "exemplars", "split", "model", "tuned")


def check_keys(cfg: Mapping[str, Any]) -> None:
  unknown = set(cfg) - set(KEYS)
  if unknown:
    raise ValueError(f"policy.semantic: unknown keys {sorted(unknown)}; known: {list(KEYS)}")
  if "review_threshold" in cfg:
    t = float(cfg["review_threshold"])
    if not 0.0 <= t <= 1.0:
      raise ValueError(f"policy.semantic.review_threshold must be in [0, 1], got {t}")


def build_layer(cfg: Mapping[str, Any], categories: Sequence[str]):
  """cfg: {"enabled", "threshold", "review_threshold" (read by the Policy), "exemplars" (a labelled .jsonl; "" = the package's prompt
  set), "split" (its rows used: "train"), "model" (a MiniLM folder; "" = the installed
  package's), "tuned" (the fine-tuned top layers + head; "" = the package's
  sorax/assets/policy_minilm_top.safetensors, "off" = the pretrained encoder)} ->
  (SemanticLayer | None, reason it is off | None). A layer is built (the encoder loaded, the
  head taken or fitted) once per process for the same settings."""
  check_keys(cfg)
  if not cfg.get("enabled", True):
    return None, "disabled in the safety settings (policy.semantic.enabled=False)"
  from sorax.models.minilm import MiniLMMissing  # noqa: PLC0415
  rows = load_prompt_set(cfg.get("exemplars") or PROMPT_SET, cfg.get("split", "train") or None)
  exemplars = exemplars_of(rows, categories)
  try:
    layer = _cached_layer(cfg.get("model") or None, tuned_path(cfg.get("tuned", "")),
                          tuple(categories), exemplars, float(cfg.get("threshold", 0.5)))
  except MiniLMMissing as e:
    return None, str(e)
  return layer, None
