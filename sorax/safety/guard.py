"""The one door every generated file goes out through: policy, watermark, C2PA, atomic write.

    safety = load_safety("experiments/safety.py")          # or load_safety(cfg) / SAFETY_OFF
    safety.check_prompts(prompts)                           # before any generation
    files = safety.write(videos, names, out_dir, prompts=prompts, model=..., config=...)

Each video: the output checks of the policy run on the watermarked frames (the mark must read
back), the mp4 (and gif / png) is written to a temporary name, signed with a C2PA manifest,
sealed, and only then renamed into place, so a failure never leaves an unmarked or half-written
file under an output's name. Turning a part off is explicit (`--no-watermark`, `--no-c2pa`,
the `off` variant) and printed on stderr every time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections
import numpy as np

from sorax.safety import provenance
from sorax.safety.policy import Policy
from sorax.safety.watermark import Watermark, WatermarkConfig, payload

SAFETY_CONFIG = pathlib.Path(__file__).resolve().parent / "settings.py"  # inside the package


def model_id(model: str, config: Any = None) -> int:
  """A 16-bit id of the model (its name and config), carried by the watermark."""
  blob = model + json.dumps(config, sort_keys=True, default=str)
  return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:2], "big")


@dataclasses.dataclass
class Safety:
  policy: Policy | None
  watermark: Watermark | None
  signing: provenance.Signing | None
  include_prompt: bool = False
  trust_anchors: str | None = None

  def notices(self) -> list[str]:
    off = [name for name, part in (("content policy", self.policy and self.policy.enabled),
                                   ("watermark", self.watermark), ("C2PA signing", self.signing))
           if not part]
    lines = [f"sorax: {name} is OFF for this run" for name in off]
    why = self.policy.semantic_unavailable() if self.policy and self.policy.enabled else None
    if why:
      lines.append(f"sorax: the content policy's semantic layer is OFF ({why}); only the word "
                   "list checks prompts")
    return lines

  def announce(self) -> None:
    for line in self.notices():
      print(line, file=sys.stderr, flush=True)

  def check_prompts(self, prompts: Sequence[str]) -> None:
    if self.policy is not None:
      self.policy.enforce_prompts(prompts)

  def write(self, videos: np.ndarray, names: Sequence[str], out: str | os.PathLike, *,
            prompts: Sequence[str | None], model: str, config: Any = None, gif: bool = False,
            png: bool = False, fps: int = 8) -> list[dict[str, Any]]:
    """Writes <out>/<name>.mp4 (+ .gif, + .png of frame 0) for each uint8 [T, H, W, 3] video.
    -> one record per video: {"files", "model_id", "generation_id", "watermark", "signed"}."""
    from sorax.data.video_write import write_gif, write_mp4, write_png
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mid = model_id(model, config)
    records = []
    for video, name, prompt in zip(videos, names, prompts):
      gen = secrets.randbits(32)
      bits = None
      if self.watermark is not None:
        bits = payload(mid, gen, self.watermark.cfg.payload_bits)
        video = self.watermark.embed(video, bits)
      if self.policy is not None:
        self.policy.check_output(video, {"prompt": prompt, "watermark": self.watermark,
                                         "payload": bits})
      claims = provenance.generation_claims(
          model=model, config=config, prompt=prompt, include_prompt=self.include_prompt,
          watermark={"model_id": mid, "generation_id": gen} if bits is not None else None)
      writers = [(".mp4", lambda p, v=video: write_mp4(p, v, fps=fps))]
      if gif:
        writers.append((".gif", lambda p, v=video: write_gif(p, v, fps=fps)))
      if png:
        writers.append((".png", lambda p, v=video: write_png(p, v[0])))
      files = []
      for ext, writer in writers:
        final = out / f"{name}{ext}"
        tmp = out / f".{name}.partial{ext}"
        try:
          writer(tmp)
          if self.signing is not None:
            provenance.sign_file(tmp, self.signing, claims)
          tmp.replace(final)
        finally:
          tmp.unlink(missing_ok=True)
        files.append(str(final))
      records.append({"files": files, "model_id": mid, "generation_id": gen,
                      "watermark": bits is not None, "signed": self.signing is not None})
    return records


  def write_image(self, image: np.ndarray, name: str, out: str | os.PathLike, *, model: str,
                  config: Any = None, prompt: str | None = None) -> str:
    """Writes <out>/<name>.png (uint8 [H, W, 3], e.g. a contact sheet of generated frames,
    which carry their own watermark) C2PA-signed and atomic. -> the file."""
    from sorax.data.video_write import write_png
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final, tmp = out / f"{name}.png", out / f".{name}.partial.png"
    claims = provenance.generation_claims(model=model, config=config, prompt=prompt,
                                          include_prompt=self.include_prompt, watermark=None)
    try:
      write_png(tmp, image)
      if self.signing is not None:
        provenance.sign_file(tmp, self.signing, claims)
      tmp.replace(final)
    finally:
      tmp.unlink(missing_ok=True)
    return str(final)


SAFETY_OFF = Safety(policy=None, watermark=None, signing=None)


def key_dir(p: ml_collections.ConfigDict) -> pathlib.Path:
  """The provenance config's key_dir; $SORAX_KEY_DIR wins when set (tests, CI)."""
  return pathlib.Path(os.environ.get("SORAX_KEY_DIR") or p.key_dir).expanduser()


def trust_anchors(p: ml_collections.ConfigDict) -> str | None:
  """The configured trust anchors, else the local test root when one exists."""
  if p.trust_anchors:
    return p.trust_anchors
  root = key_dir(p) / "root.pem"
  return str(root) if root.exists() else None


def watermark_from(w: ml_collections.ConfigDict) -> Watermark:
  return Watermark(WatermarkConfig(key=w.key, strength=w.strength, threshold=w.threshold,
                                   follow_motion=bool(w.get("follow_motion", False))))


def _signing(p: ml_collections.ConfigDict) -> provenance.Signing:
  kdir = key_dir(p)
  cert, key = p.cert, p.key
  if not cert and not key:
    keys = provenance.TestKeys(kdir)
    if not (pathlib.Path(keys.cert).exists() and pathlib.Path(keys.key).exists()):
      keys = provenance.create_test_keys(kdir, overwrite=True)
      print(f"sorax: created a local self-signed C2PA test chain in {kdir} (outputs are "
            "signed with it; set safety.provenance.cert/key for a real certificate)",
            file=sys.stderr, flush=True)
    cert, key = keys.cert, keys.key
  elif not (cert and key):
    raise provenance.ProvenanceError("safety.provenance.cert and .key go together: set both")
  return provenance.Signing(cert=cert, key=key, alg=p.alg, tsa_url=p.tsa_url)


def safety_config(spec: str | None = None,
                  overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """experiments/safety.py[:variant] (or `spec`) with `--safety.key=value` overrides applied."""
  from sorax import config as config_lib
  cfg = config_lib.load_file(spec or str(SAFETY_CONFIG))
  config_lib.apply_overrides(cfg, [o.replace("--safety.", "--config.", 1) for o in overrides])
  return cfg


def load_safety(spec: str | ml_collections.ConfigDict | None = None, overrides: Sequence[str] = (),
                *, no_watermark: bool = False, no_c2pa: bool = False,
                announce: bool = True) -> Safety:
  """The Safety of a config (experiments/safety.py[:variant] by default) plus `--safety.x=v`
  overrides; `no_watermark` / `no_c2pa` turn those parts off (and it is said on stderr)."""
  cfg = spec if isinstance(spec, ml_collections.ConfigDict) else safety_config(spec, overrides)
  policy = Policy.from_config(cfg.policy.to_dict()) if cfg.policy.enabled else None
  mark = watermark_from(cfg.watermark) if cfg.watermark.enabled and not no_watermark else None
  signing = _signing(cfg.provenance) if cfg.provenance.enabled and not no_c2pa else None
  safety = Safety(policy=policy, watermark=mark, signing=signing,
                  include_prompt=cfg.provenance.include_prompt,
                  trust_anchors=trust_anchors(cfg.provenance))
  if announce:
    safety.announce()
  return safety
