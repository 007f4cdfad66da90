"""`sorax detect FILE`: is this a sorax output? Reads the C2PA manifest and the watermark back.

    detect_file("out/0.mp4") -> {"file", "c2pa": {...}, "watermark": {...}, "verdict", "reason"}

Verdicts:
  "sorax"            the C2PA manifest is valid and the watermark is present
  "sorax-watermark"  the watermark is present but the manifest is missing, invalid or tampered
                     (e.g. the file was re-encoded, cropped or edited by another tool)
  "sorax-c2pa"       a valid sorax manifest, but the watermark does not read (heavy edits,
                     or a file made with the watermark turned off)
  "tampered"         a manifest whose bytes were edited, and no watermark
  "not-detected"     neither
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from sorax.safety import provenance
from sorax.safety.watermark import Watermark, WatermarkConfig


IMAGES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def read_frames(path: pathlib.Path) -> np.ndarray:
  """Any video or image file -> uint8 [T, H, W, 3] (an image is one frame)."""
  from sorax.data.video_io import VideoReadError, read_video
  if path.suffix.lower() not in IMAGES:
    return read_video(path)
  import av
  try:
    with av.open(str(path)) as container:
      frame = next(container.decode(video=0))
      return frame.to_ndarray(format="rgb24")[None]
  except (av.error.FFmpegError, StopIteration) as e:
    raise VideoReadError(f"{path}: not a readable image: {e}") from e


def detect_file(path: str | pathlib.Path, *, trust_anchors: str | None = None,
                watermark: Watermark | None = None) -> dict[str, Any]:
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found")
  try:
    c2pa = provenance.verify_file(path, trust_anchors=trust_anchors)
  except provenance.ProvenanceError as e:
    c2pa = {"present": False, "valid": False, "state": "invalid", "failures": [str(e)]}
  mark = watermark or Watermark(WatermarkConfig())
  frames = read_frames(path)
  wm = mark.detect(frames)
  claims = c2pa.get("claims") or {}
  sorax_manifest = c2pa.get("valid") and isinstance(claims, dict) and "model" in claims
  expected = (claims.get("watermark") or {}) if isinstance(claims, dict) else {}
  if wm["present"] and wm["payload_valid"] and expected:
    wm["matches_manifest"] = wm["payload"] == {k: expected.get(k) for k in wm["payload"]}
  if sorax_manifest and wm["present"]:
    verdict, reason = "sorax", "valid C2PA manifest and watermark present"
  elif wm["present"]:
    verdict = "sorax-watermark"
    reason = f"watermark present; C2PA manifest {c2pa['state']}"
  elif sorax_manifest:
    verdict, reason = "sorax-c2pa", "valid C2PA manifest; no watermark found"
  elif c2pa.get("state") == "tampered":
    verdict, reason = "tampered", "the C2PA manifest's bytes were edited; no watermark found"
  else:
    verdict, reason = "not-detected", f"no watermark; C2PA manifest {c2pa.get('state')}"
  return {"file": str(path), "frames": list(frames.shape[:3]), "c2pa": {
      "present": c2pa.get("present", False), "valid": c2pa.get("valid", False),
      "state": c2pa.get("state"), "trusted": c2pa.get("trusted"), "sealed": c2pa.get("sealed"),
      "signer": c2pa.get("signer"), "claims": c2pa.get("claims"),
      "failures": c2pa.get("failures", [])},
      "watermark": {k: wm[k] for k in ("present", "payload", "confidence", "score", "threshold",
                                       "payload_valid", "bit_confidence")
                    } | ({"matches_manifest": wm["matches_manifest"]}
                         if "matches_manifest" in wm else {}),
      "verdict": verdict, "reason": reason}
