"""The `sorax` commands on files and prompts, not models: keys, detect, policy (sorax/cli.py
dispatches them and turns their errors into exit codes)."""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Sequence


def add_parsers(sub) -> None:
  _add_keys(sub)
  _add_detect(sub)
  _add_policy(sub)


def _add_keys(sub):
  p = sub.add_parser("keys", help="C2PA signing keys")
  ks = p.add_subparsers(dest="keys_verb", required=True)
  c = ks.add_parser("create", help="make a self-signed test chain (root CA + signer) for local use")
  c.add_argument("--dir", default=None, help="where (default: the safety config's key_dir)")
  c.add_argument("--overwrite", action="store_true")


def _add_detect(sub):
  p = sub.add_parser("detect", help="read the C2PA manifest and the watermark of files back")
  p.add_argument("files", nargs="+")
  p.add_argument("--trust", default=None,
                 help="PEM of trusted roots (default: the local test root, if any)")
  p.add_argument("--safety", default=None, help="safety config (its watermark key)")


def _add_policy(sub):
  p = sub.add_parser("policy", help="check prompts against the content policy, one JSON line each")
  p.add_argument("prompts", nargs="*")
  p.add_argument("--file", default=None, help="a text file, one prompt per line")
  p.add_argument("--safety", default=None, help="safety config (default: experiments/safety.py)")


def cmd_keys(args) -> int:
  from sorax.safety.guard import key_dir, safety_config
  from sorax.safety.provenance import create_test_keys
  directory = args.dir or key_dir(safety_config().provenance)
  keys = create_test_keys(directory, overwrite=args.overwrite)
  print(json.dumps({"cert": keys.cert, "key": keys.key, "root": keys.root,
                    "note": "self-signed: trusted only where root.pem is a trust anchor"}))
  return 0


def cmd_detect(args, overrides: Sequence[str]) -> int:
  from sorax.safety.detect import detect_file
  from sorax.safety.guard import safety_config, trust_anchors, watermark_from
  cfg = safety_config(args.safety, overrides)
  mark = watermark_from(cfg.watermark)
  anchors = args.trust or trust_anchors(cfg.provenance)
  for f in args.files:
    print(json.dumps(detect_file(f, trust_anchors=anchors, watermark=mark)))
  return 0


def cmd_policy(args, overrides: Sequence[str]) -> int:
  """Decisions only (for moderation pipelines): exit 0 whatever they are; 2 on bad input."""
  from sorax.safety.guard import safety_config
  from sorax.safety.policy import Policy
  prompts = list(args.prompts)
  if args.file:
    path = pathlib.Path(args.file)
    if not path.is_file():
      raise FileNotFoundError(f"--file {path} not found")
    prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
  if not prompts:
    raise ValueError("give prompts as arguments or --file F (one per line)")
  cfg = safety_config(args.safety, overrides)
  policy = Policy.from_config(cfg.policy.to_dict())
  status = policy.semantic_status()
  if status != "on":
    print(f"sorax policy: the semantic layer is {status}", file=sys.stderr)
  for prompt, d in zip(prompts, policy.check_prompts(prompts)):
    print(json.dumps({"prompt": prompt, "allowed": d.allowed, "category": d.category,
                      "score": d.score, "layer": d.layer, "matched": d.matched,
                      "semantic": status}))
  return 0
