"""C2PA provenance: sign, verify, trust, and the tamper test (every byte of signed files)."""

import json
import os
import stat

import numpy as np
import pytest

from sorax.data.video_write import write_gif, write_mp4, write_png
from sorax.safety import provenance as P


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
  return P.create_test_keys(tmp_path_factory.mktemp("keys") / "k")


@pytest.fixture(scope="module")
def signing(keys):
  return P.Signing(cert=keys.cert, key=keys.key)


def _media(folder, ext, seed=0):
  v = np.random.default_rng(seed).integers(0, 255, (2, 16, 16, 3)).astype(np.uint8)
  f = folder / f"m{seed}.{ext}"
  {"mp4": lambda: write_mp4(f, v), "gif": lambda: write_gif(f, v), "png": lambda: write_png(f, v[0])}[ext]()
  return f


def test_create_test_keys(tmp_path, keys):
  for p in (keys.cert, keys.key, keys.root):
    assert os.path.getsize(p) > 100
  assert stat.S_IMODE(os.stat(keys.key).st_mode) == 0o600
  assert open(keys.cert).read().count("BEGIN CERTIFICATE") == 2  # signer + root
  with pytest.raises(FileExistsError, match="already exist"):
    P.create_test_keys(keys.dir)


@pytest.mark.parametrize("ext", ["mp4", "png", "gif"])
def test_sign_and_verify(tmp_path, keys, signing, ext):
  f = _media(tmp_path, ext)
  assert P.verify_file(f)["state"] == "missing"
  claims = P.generation_claims(model="sorax-dit@10", config={"lr": 1e-3}, prompt="a red circle")
  P.sign_file(f, signing, claims)
  r = P.verify_file(f, trust_anchors=keys.root)
  assert r["state"] == "valid" and r["valid"] and r["trusted"] and r["sealed"], r
  c = r["claims"]
  assert c["model"] == "sorax-dit@10" and "prompt" not in c
  assert c["prompt_sha256"] == P.sha256_text("a red circle")
  assert c["config_sha256"] == P.sha256_text(json.dumps({"lr": 1e-3}, sort_keys=True))
  assert r["generator"][0]["name"] == "sorax"
  assert P.verify_file(f)["trusted"] is None  # no anchors given: valid, trust unknown
  assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_manifest_says_trained_algorithmic_media(tmp_path, signing):
  import c2pa
  f = _media(tmp_path, "png")
  P.sign_file(f, signing, P.generation_claims(model="m", prompt="p", include_prompt=True))
  with open(f, "rb") as fh, c2pa.Reader("image/png", fh) as reader:
    store = json.loads(reader.json())
  active = store["manifests"][store["active_manifest"]]
  actions = next(a for a in active["assertions"] if a["label"].startswith("c2pa.actions"))
  act = actions["data"]["actions"][0]
  assert act["action"] == "c2pa.created" and act["digitalSourceType"] == P.TRAINED
  assert P.verify_file(f)["claims"]["prompt"] == "p"


def test_untrusted_signer(tmp_path, signing):
  other = P.create_test_keys(tmp_path / "other")
  f = _media(tmp_path, "mp4")
  P.sign_file(f, signing, P.generation_claims(model="m"))
  r = P.verify_file(f, trust_anchors=other.root)
  assert r["state"] == "valid" and r["trusted"] is False


@pytest.mark.parametrize("ext", ["mp4", "png", "gif"])
def test_editing_any_byte_is_detected(tmp_path, signing, ext):
  f = _media(tmp_path, ext, seed=1)
  P.sign_file(f, signing, P.generation_claims(model="m", prompt="p"))
  data = f.read_bytes()
  g = tmp_path / f"edited.{ext}"
  missed = []
  for pos in range(len(data)):
    b = bytearray(data)
    b[pos] ^= 0x01
    g.write_bytes(b)
    if P.verify_file(g)["state"] == "valid":
      missed.append(pos)
  assert not missed, f"{len(missed)} of {len(data)} edited bytes went unnoticed: {missed[:10]}"


def test_tampered_states(tmp_path, signing):
  f = _media(tmp_path, "mp4", seed=2)
  P.sign_file(f, signing, P.generation_claims(model="m"))
  data = bytearray(f.read_bytes())
  mdat = data.find(b"mdat")
  data[mdat + 20] ^= 0xFF  # the video itself
  f.write_bytes(data)
  r = P.verify_file(f)
  assert r["state"] == "tampered" and not r["valid"] and r["failures"]


def test_errors(tmp_path, signing):
  f = _media(tmp_path, "mp4", seed=3)
  with pytest.raises(P.ProvenanceError, match="not found.*sorax keys create"):
    P.sign_file(f, P.Signing(cert=str(tmp_path / "nope.pem"), key=signing.key), {"model": "m"})
  with pytest.raises(P.ProvenanceError, match="cannot sign .txt"):
    P.sign_file(tmp_path / "a.txt", signing, {"model": "m"})
  with pytest.raises(FileNotFoundError):
    P.verify_file(tmp_path / "none.mp4")
  bad = tmp_path / "bad.key"
  bad.write_text("not a key")
  with pytest.raises(P.ProvenanceError, match="C2PA"):
    P.sign_file(f, P.Signing(cert=signing.cert, key=str(bad)), {"model": "m"})
  assert P.verify_file(f)["state"] == "missing"  # the failed signing left the file as it was
