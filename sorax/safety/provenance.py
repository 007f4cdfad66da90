"""C2PA provenance: sign every output (mp4, png, gif) with a manifest, and verify it.

    keys = create_test_keys("~/.sorax/keys")              # a self-signed test chain, local use
    sign_file("out/0.mp4", Signing(cert=keys.cert, key=keys.key), generation_claims(...))
    verify_file("out/0.mp4", trust_anchors=keys.root)     # {"state": "valid", "claims": ...}

The manifest (c2pa-python over the c2pa-rs SDK): claim generator `sorax <version>`, a
`c2pa.created` action with digitalSourceType trainedAlgorithmicMedia, and an
`org.sorax.generation` assertion with the model, a hash of its config, the watermark payload and
a SHA-256 of the prompt (the prompt itself only when asked).

Verification states: "valid" (the signature, the content hashes and the seal check),
"tampered" (a hash, the signature or the seal fails: bytes were edited), "invalid" (a manifest
is there but broken, unreadable or otherwise fails validation), "missing" (no manifest). Apart
from the state, "trusted" says whether the signer chains to one of the given trust anchors
(None when no anchors are given): an intact file signed by an unknown key is valid, not trusted.

c2pa-rs leaves a few bytes of a signed file outside its signature (mp4 `ftyp`, JUMBF headers,
the signature's zero padding); sorax adds a seal over every byte (sorax/safety/seal.py), so that
editing any byte of a signed file is detected (tests/test_provenance.py flips every byte).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import os
import pathlib
import re
from typing import Any

import c2pa

from sorax import __version__
from sorax.safety import seal as seal_lib

TRAINED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MIME = {".mp4": "video/mp4", ".png": "image/png", ".gif": "image/gif", ".mov": "video/quicktime",
        ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
ASSERTION = "org.sorax.generation"
ALGS = {"es256": c2pa.C2paSigningAlg.ES256, "es384": c2pa.C2paSigningAlg.ES384,
        "ed25519": c2pa.C2paSigningAlg.ED25519, "ps256": c2pa.C2paSigningAlg.PS256}


class ProvenanceError(RuntimeError):
  """Signing could not be done (missing or bad key/certificate, unsupported file)."""


@dataclasses.dataclass(frozen=True)
class Signing:
  cert: str                 # PEM chain, signing certificate first
  key: str                  # PEM private key of the signing certificate
  alg: str = "es256"
  tsa_url: str = ""         # RFC 3161 time-stamp authority ("" = none; needs the network)


@dataclasses.dataclass(frozen=True)
class TestKeys:
  dir: pathlib.Path

  @property
  def cert(self) -> str:
    return str(self.dir / "chain.pem")

  @property
  def key(self) -> str:
    return str(self.dir / "signer.key")

  @property
  def root(self) -> str:
    return str(self.dir / "root.pem")


def mime_type(path: str | os.PathLike) -> str:
  ext = pathlib.Path(path).suffix.lower()
  if ext not in MIME:
    raise ProvenanceError(f"{path}: cannot sign {ext or 'extension-less'} files; sorax signs "
                          f"{', '.join(sorted(MIME))}")
  return MIME[ext]


# ------------------------------------------------------------------------------ keys


def create_test_keys(directory: str | os.PathLike, *, overwrite: bool = False,
                     days: int = 365) -> TestKeys:
  """A self-signed root CA and a signing certificate it issues (ECDSA P-256), for local use.

  Writes root.pem, chain.pem (signer + root) and signer.key (mode 0600) atomically. Such a
  chain is only trusted where its root is given as a trust anchor: a real deployment signs
  with a certificate from a CA on the C2PA trust list.
  """
  from cryptography import x509
  from cryptography.hazmat.primitives import hashes, serialization
  from cryptography.hazmat.primitives.asymmetric import ec
  from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

  out = pathlib.Path(directory).expanduser()
  keys = TestKeys(out)
  if not overwrite and any(pathlib.Path(p).exists() for p in (keys.cert, keys.key, keys.root)):
    raise FileExistsError(f"keys already exist in {out} (pass overwrite=True / --overwrite)")
  now = datetime.datetime.now(datetime.timezone.utc)

  def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sorax local test")])

  def usage(**on) -> x509.KeyUsage:
    fields = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
              "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{f: on.get(f, False) for f in fields})

  ca_key = ec.generate_private_key(ec.SECP256R1())
  ca = (x509.CertificateBuilder().subject_name(name("sorax test root CA"))
        .issuer_name(name("sorax test root CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=10 * days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256()))
  key = ec.generate_private_key(ec.SECP256R1())
  leaf = (x509.CertificateBuilder().subject_name(name("sorax test signer"))
          .issuer_name(ca.subject).public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(usage(digital_signature=True), critical=True)
          # C2PA wants a signing EKU; emailProtection is one its validators accept.
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                         False)
          .sign(ca_key, hashes.SHA256()))
  pem = lambda c: c.public_bytes(serialization.Encoding.PEM)
  out.mkdir(parents=True, exist_ok=True)
  files = {keys.root: pem(ca), keys.cert: pem(leaf) + pem(ca),
           keys.key: key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())}
  for path, data in files.items():
    tmp = pathlib.Path(path + ".tmp")
    tmp.write_bytes(data)
    if path == keys.key:
      tmp.chmod(0o600)
    tmp.replace(path)
  return keys


# ------------------------------------------------------------------------------ sign


def sha256_text(text: str) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def generation_claims(*, model: str, config: Any = None, prompt: str | None = None,
                      include_prompt: bool = False, **extra: Any) -> dict[str, Any]:
  """The `org.sorax.generation` assertion: model, config hash, prompt hash (and prompt)."""
  claims: dict[str, Any] = {"model": model}
  if config is not None:
    blob = config if isinstance(config, str) else json.dumps(config, sort_keys=True, default=str)
    claims["config_sha256"] = sha256_text(blob)
  if prompt is not None:
    claims["prompt_sha256"] = sha256_text(prompt)
    if include_prompt:
      claims["prompt"] = prompt
  claims.update(extra)
  return claims


def manifest(claims: dict[str, Any], title: str = "") -> dict[str, Any]:
  return {
      "claim_generator_info": [{"name": "sorax", "version": __version__}],
      "title": title,
      "assertions": [
          {"label": "c2pa.actions",
           "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": TRAINED,
                                 "softwareAgent": {"name": "sorax", "version": __version__}}]}},
          {"label": ASSERTION, "data": claims},
      ],
  }


def _signer(signing: Signing) -> c2pa.Signer:
  if signing.alg not in ALGS:
    raise ProvenanceError(f"unknown signing algorithm {signing.alg!r}; choose from {sorted(ALGS)}")
  blobs = []
  for what, path in (("certificate chain", signing.cert), ("private key", signing.key)):
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
      raise ProvenanceError(f"C2PA {what} {p} not found (run `sorax keys create` for a local "
                            "test chain, or set safety.provenance.cert/key)")
    blobs.append(p.read_bytes())
  try:
    info = c2pa.C2paSignerInfo(ALGS[signing.alg], blobs[0], blobs[1], signing.tsa_url or None)
    return c2pa.Signer.from_info(info)
  except c2pa.C2paError as e:
    raise ProvenanceError(f"C2PA signer from {signing.cert} / {signing.key}: {e}") from e


def sign_file(path: str | os.PathLike, signing: Signing, claims: dict[str, Any]) -> None:
  """Embeds a signed manifest into `path` in place, atomically (temp file + rename)."""
  path = pathlib.Path(path)
  mime = mime_type(path)
  signer = _signer(signing)
  tmp = path.with_name(f".{path.stem}.signing{path.suffix}")
  try:
    # The signed claims say a seal follows, so a file whose seal was cut out is caught too.
    # No thumbnail: c2pa would embed one as large as the output itself.
    with c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}}}) as ctx, \
        c2pa.Builder.from_json(manifest({**claims, "sealed": True}, title=path.name),
                               context=ctx) as builder, \
        open(path, "rb") as src, open(tmp, "w+b") as dst:
      builder.sign(signer, mime, src, dst)
    key_pem = pathlib.Path(signing.key).expanduser().read_bytes()
    tmp.write_bytes(seal_lib.seal(tmp.read_bytes(), mime, key_pem))
    tmp.replace(path)
  except (c2pa.C2paError, seal_lib.SealError) as e:
    raise ProvenanceError(f"C2PA signing of {path} failed: {e}") from e
  finally:
    tmp.unlink(missing_ok=True)
    signer.close()


# ------------------------------------------------------------------------------ verify

_TAMPER_CODES = re.compile(r"(dataHash|bmffHash|boxesHash|collectionHash)\.mismatch|"
                           r"assertion\.hashedURI\.mismatch|claimSignature\.mismatch|"
                           r"signingCredential\.invalid|general\.error")
_UNTRUSTED = {"signingCredential.untrusted"}


def verify_file(path: str | os.PathLike, *, trust_anchors: str | None = None) -> dict[str, Any]:
  """-> {"present", "valid", "state", "trusted", "sealed", "claims", "generator", "signer",
  "failures"}.

  `trust_anchors`: a PEM file of root certificates to trust (e.g. `sorax keys create`'s
  root.pem); without it "trusted" is None.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found")
  data = path.read_bytes()
  try:
    mime = mime_type(path)
  except ProvenanceError as e:
    return _result("invalid", failures=[str(e)])
  # The seal first: it is cheap, and a broken one means bytes were edited, whatever c2pa says.
  seal = seal_lib.check(data, mime)
  if seal == "broken":
    return _result("tampered", present=True, failures=["sorax.seal.mismatch"])
  settings: dict[str, Any] = {"verify": {"verify_trust": bool(trust_anchors)}}
  if trust_anchors:
    anchors = pathlib.Path(trust_anchors).expanduser()
    if not anchors.is_file():
      raise FileNotFoundError(f"trust anchors {anchors} not found")
    settings["trust"] = {"trust_anchors": anchors.read_text()}
  try:
    with c2pa.Context.from_dict(settings) as ctx, \
        c2pa.Reader(mime, io.BytesIO(data), context=ctx) as reader:
      store = json.loads(reader.json())
      results = reader.get_validation_results() or {}
  except c2pa.C2paError as e:
    if "ManifestNotFound" in type(e).__name__ or "no JUMBF" in str(e) or "NotFound" in str(e):
      return _result("missing")
    return _result("invalid", present=True, failures=[f"{type(e).__name__}: {e}"])
  active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
  failures = [f["code"] for f in (results.get("activeManifest") or {}).get("failure", [])]
  failures += [f["code"] for f in store.get("validation_status", []) or []
               if f.get("code") not in failures]
  claims = next((a.get("data") for a in active.get("assertions", [])
                 if a.get("label") == ASSERTION), None)
  info = {"claims": claims, "generator": active.get("claim_generator_info"),
          "signer": (active.get("signature_info") or {}).get("common_name")
          or (active.get("signature_info") or {}).get("issuer")}
  info["sealed"] = seal == "sealed"
  if isinstance(claims, dict) and claims.get("sealed") and seal != "sealed":
    return _result("tampered", present=True, failures=failures + ["sorax.seal.missing"], **info)
  info["trusted"] = (not any(f in _UNTRUSTED for f in failures)) if trust_anchors else None
  hard = [f for f in failures if f not in _UNTRUSTED]
  if hard:
    state = "tampered" if any(_TAMPER_CODES.search(f) for f in hard) else "invalid"
    return _result(state, present=True, failures=failures, **info)
  return _result("valid", present=True, failures=failures, **info)


def _result(state: str, *, present: bool = False, failures=(), claims=None, generator=None,
            signer=None, sealed: bool = False, trusted: bool | None = None) -> dict[str, Any]:
  return {"present": present or state != "missing", "valid": state == "valid", "state": state,
          "trusted": trusted if state == "valid" else (False if trusted is not None else None),
          "sealed": sealed, "claims": claims, "generator": generator, "signer": signer,
          "failures": list(failures)}
