"""The sorax seal: a signature over every byte of a C2PA-signed file.

c2pa-rs validates the content hashes and the claim signature, but leaves some bytes of a signed
file outside both: the mp4 `ftyp` box, JUMBF box headers and labels, and the zero padding in
the COSE signature's unprotected header that reserves room for later additions (measured: a
flipped byte there still validates). The seal closes that gap: after c2pa signs, the padding's
room holds one more unprotected header entry, "sorax.seal", a fixed-length signature by the
same key over the SHA-256 of the whole file with the seal's own bytes zeroed. No byte moves, so
c2pa still validates the file; any edited byte breaks the seal.

Formats: the manifest store is contiguous in mp4/mov (a `uuid` box) and png (a `caBX` chunk,
whose CRC is re-computed and also checked), and split into 255-byte sub-blocks in gif (an
application extension), which `_view` stitches back together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from typing import Any

import numpy as np

LABEL = "sorax.seal"


class SealError(ValueError):
  pass


# ------------------------------------------------------------------------------ minimal CBOR


def _head(data: bytes, i: int) -> tuple[int, int, int]:
  """-> (major type, argument, offset after the head) of the CBOR item at i."""
  b = data[i]
  major, info = b >> 5, b & 0x1F
  if info < 24:
    return major, info, i + 1
  n = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
  if n is None or i + 1 + n > len(data):
    raise SealError(f"indefinite, reserved or truncated CBOR length at byte {i}")
  return major, int.from_bytes(data[i + 1:i + 1 + n], "big"), i + 1 + n


def _item(data: bytes, i: int, depth: int = 0) -> tuple[Any, int]:
  """Definite-length CBOR -> (value, end). Maps are lists of (key, value, start, end) so that a
  caller knows where each value lies."""
  if depth > 16 or i >= len(data):
    raise SealError("CBOR too deep or truncated")
  major, arg, j = _head(data, i)
  if major in (0, 1):
    return (arg if major == 0 else -1 - arg), j
  if major in (2, 3):
    if j + arg > len(data):
      raise SealError("truncated CBOR string")
    raw = data[j:j + arg]
    return (raw if major == 2 else raw.decode("utf-8", "replace")), j + arg
  if major == 4:
    out = []
    for _ in range(arg):
      v, j = _item(data, j, depth + 1)
      out.append(v)
    return out, j
  if major == 5:
    items = []
    for _ in range(arg):
      k, j = _item(data, j, depth + 1)
      start = j
      v, j = _item(data, j, depth + 1)
      items.append((k, v, start, j))
    return items, j
  if major == 6:
    return _item(data, j, depth + 1)
  return None, j  # simple values and floats: not needed here


def _uint(major: int, n: int) -> bytes:
  if n < 24:
    return bytes([major << 5 | n])
  for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
    if n < 1 << (8 * size):
      return bytes([major << 5 | info]) + n.to_bytes(size, "big")
  raise SealError(f"CBOR argument {n} too large")


def _key(k: str | int) -> bytes:
  if isinstance(k, str):
    b = k.encode()
    return _uint(3, len(b)) + b
  return _uint(0, k) if k >= 0 else _uint(1, -1 - k)


# ------------------------------------------------------------------------------ containers


@dataclasses.dataclass
class _View:
  data: bytes                      # the bytes the manifest store lies in, stitched together
  pos: np.ndarray | None = None    # file offset of each view byte (None: view == file)
  crc_at: int | None = None        # png: file offset of the caBX chunk's CRC
  crc_span: tuple[int, int] | None = None  # png: the bytes that CRC covers (type + data)

  def to_file(self, start: int, end: int) -> np.ndarray:
    if self.pos is None:
      return np.arange(start, end)
    return self.pos[start:end]


def _view(file: bytes, mime: str) -> _View:
  if mime == "image/gif":
    at = file.find(b"\x21\xff\x0bC2PA_GIF")
    if at < 0:
      raise SealError("no C2PA application extension in the gif")
    i, parts, pos = at + 14, [], []
    while i < len(file) and file[i]:
      n = file[i]
      parts.append(file[i + 1:i + 1 + n])
      pos.append(np.arange(i + 1, i + 1 + n))
      i += 1 + n
    if not parts:
      raise SealError("empty C2PA application extension in the gif")
    return _View(b"".join(parts), np.concatenate(pos))
  if mime == "image/png":
    i = 8
    while i + 8 <= len(file):
      n = int.from_bytes(file[i:i + 4], "big")
      if file[i + 4:i + 8] == b"caBX":
        return _View(file, None, crc_at=i + 8 + n, crc_span=(i + 4, i + 8 + n))
      i += 12 + n
    raise SealError("no caBX chunk in the png")
  return _View(file)


@dataclasses.dataclass
class _Cose:
  """The COSE_Sign1 of the active manifest's signature, in view coordinates."""
  header_start: int                # the unprotected header map
  header_end: int
  entries: list                    # [(label, value, value_start, value_end)]
  certs: list                      # x5chain: DER certificates, signer first


def _cose(view: bytes) -> _Cose:
  at = view.rfind(b"c2pa.signature\x00")
  box = view.find(b"cbor", at) if at >= 0 else -1
  if box < 0:
    raise SealError("no c2pa.signature box")
  major, _, j = _head(view, box + 4)
  if major == 6:  # tag 18: COSE_Sign1
    major, _, j = _head(view, j)
  if major != 4:
    raise SealError("c2pa.signature is not a COSE_Sign1 array")
  protected, j = _item(view, j)
  start = j
  entries, end = _item(view, j)
  if not isinstance(entries, list) or not all(isinstance(e, tuple) for e in entries):
    raise SealError("COSE unprotected header is not a map")
  prot = _item(protected, 0)[0] if isinstance(protected, bytes) and protected else []
  if not isinstance(prot, list) or not all(isinstance(e, tuple) for e in prot):
    prot = []
  chain = next((v for k, v, *_ in prot + entries if k == 33), None)  # 33: x5chain
  certs = [chain] if isinstance(chain, bytes) else [c for c in chain or [] if isinstance(c, bytes)]
  return _Cose(start, end, entries, certs)


def _digest(file: bytes, view: _View, zero: np.ndarray) -> bytes:
  buf = np.frombuffer(file, np.uint8).copy()
  buf[zero] = 0
  if view.crc_at is not None:
    buf[view.crc_at:view.crc_at + 4] = 0
  return hashlib.sha256(buf.tobytes()).digest()


# ------------------------------------------------------------------------------ keys


def _sign(key_pem: bytes, digest: bytes) -> bytes:
  """A fixed-length signature of a SHA-256 digest (raw r||s for ECDSA)."""
  from cryptography.hazmat.primitives import hashes, serialization
  from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
  key = serialization.load_pem_private_key(key_pem, password=None)
  if isinstance(key, ec.EllipticCurvePrivateKey):
    r, s = utils.decode_dss_signature(key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))))
    n = (key.curve.key_size + 7) // 8
    return r.to_bytes(n, "big") + s.to_bytes(n, "big")
  if isinstance(key, ed25519.Ed25519PrivateKey):
    return key.sign(digest)
  if isinstance(key, rsa.RSAPrivateKey):
    return key.sign(digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                    utils.Prehashed(hashes.SHA256()))
  raise SealError(f"unsupported key type {type(key).__name__}")


def _verify(cert_der: bytes, digest: bytes, sig: bytes) -> bool:
  from cryptography import x509
  from cryptography.hazmat.primitives import hashes
  from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
  try:
    pub = x509.load_der_x509_certificate(cert_der).public_key()
    if isinstance(pub, ec.EllipticCurvePublicKey):
      n = len(sig) // 2
      der = utils.encode_dss_signature(int.from_bytes(sig[:n], "big"),
                                       int.from_bytes(sig[n:], "big"))
      pub.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    elif isinstance(pub, ed25519.Ed25519PublicKey):
      pub.verify(sig, digest)
    elif isinstance(pub, rsa.RSAPublicKey):
      pub.verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                 utils.Prehashed(hashes.SHA256()))
    else:
      return False
    return True
  except Exception:  # noqa: BLE001 (a corrupt certificate or signature is simply not a seal)
    return False


# ------------------------------------------------------------------------------ seal / check


def seal(file: bytes, mime: str, key_pem: bytes) -> bytes:
  """-> `file` (just signed by c2pa with `key_pem`) with the seal in place; same length."""
  view = _view(file, mime)
  cose = _cose(view.data)
  sig_len = len(_sign(key_pem, bytes(32)))
  keep = b"".join(_key(k) + view.data[a:b] for k, _, a, b in cose.entries
                  if k not in ("pad", "pad2", LABEL))
  n_keep = sum(k not in ("pad", "pad2", LABEL) for k, *_ in cose.entries)
  size = cose.header_end - cose.header_start
  prefix = _uint(5, n_keep + 2) + keep + _key(LABEL) + _uint(2, sig_len)
  for pad in range(size - len(prefix) - len(_key("pad")) - 1, -1, -1):
    header = prefix + bytes(sig_len) + _key("pad") + _uint(2, pad) + bytes(pad)
    if len(header) == size:
      break
  else:
    raise SealError(f"no room for the seal in the signature's {size}-byte unprotected header")
  sig_at = cose.header_start + len(prefix)
  buf = np.frombuffer(file, np.uint8).copy()
  buf[view.to_file(cose.header_start, cose.header_end)] = np.frombuffer(header, np.uint8)
  sig_pos = view.to_file(sig_at, sig_at + sig_len)
  sig = _sign(key_pem, _digest(buf.tobytes(), view, sig_pos))
  buf[sig_pos] = np.frombuffer(sig, np.uint8)
  if view.crc_at is not None:
    a, b = view.crc_span
    buf[view.crc_at:view.crc_at + 4] = np.frombuffer(
        zlib.crc32(buf[a:b].tobytes()).to_bytes(4, "big"), np.uint8)
  return buf.tobytes()


def check(file: bytes, mime: str) -> str:
  """-> "sealed" (the seal verifies), "broken" (there is one and it fails, or the file's
  structure around it is damaged) or "absent" (no c2pa signature, or no seal in it)."""
  try:
    view = _view(file, mime)
    cose = _cose(view.data)
  except SealError:
    return "absent"
  except (IndexError, ValueError):
    return "broken"
  entry = next((e for e in cose.entries if e[0] == LABEL), None)
  if entry is None:
    return "absent"
  _, sig, start, end = entry
  if not isinstance(sig, bytes) or not cose.certs:
    return "broken"
  if view.crc_at is not None:
    a, b = view.crc_span
    if zlib.crc32(file[a:b]) != int.from_bytes(file[view.crc_at:view.crc_at + 4], "big"):
      return "broken"
  sig_pos = view.to_file(end - len(sig), end)
  return "sealed" if _verify(cose.certs[0], _digest(file, view, sig_pos), sig) else "broken"
