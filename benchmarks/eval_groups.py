"""Per-group oracle rates from a `sorax eval` run: by object count, wall, static/moving, motion.

`sorax eval --out DIR` prints one row per prompt (the last nine cells are ok / x / -) and writes
DIR/prompts.jsonl with each prompt's spec. This joins the two and prints a markdown table, one
row per group, sorted by all-right. Usage:

  sorax eval --checkpoint F --out runs/eval_X --num-prompts 200 > runs/eval_X.log 2>&1
  python benchmarks/eval_groups.py runs/eval_X.log runs/eval_X/prompts.jsonl [--out groups.md]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict

CHECKS = ("color", "shape", "size", "motion", "bg", "wall", "perm", "extra", "ALL")
_ROW = re.compile(r"^\s*(\d+)\s+.*?((?:\s+(?:ok|x|-)){9})\s*$")


def parse_rows(log_text: str) -> dict[int, list[str]]:
  """Prompt index -> its nine check cells ('ok', 'x' or '-')."""
  rows = {}
  for line in log_text.splitlines():
    m = _ROW.match(line)
    if m:
      rows[int(m.group(1))] = m.group(2).split()
  return rows


def groups_of(spec: dict) -> list[str]:
  objs = spec["objects"]
  motions = {o["motion"] for o in objs}
  names = [f"{len(objs)} object(s)", "wall" if spec["wall"] else "no wall"]
  names.append("all static" if motions == {"static"} else "any moving")
  names += [f"has {m}" for m in sorted(motions)]
  return names


def table(rows: dict[int, list[str]], specs: list[dict]) -> str:
  # group -> check -> [ok count, counted]
  acc: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
  sizes: dict[str, int] = defaultdict(int)
  for i, cells in rows.items():
    for g in groups_of(specs[i]):
      sizes[g] += 1
      for check, cell in zip(CHECKS, cells):
        if cell != "-":
          acc[g][check][0] += cell == "ok"
          acc[g][check][1] += 1

  def rate(g, c):
    ok, n = acc[g][c]
    return ok / n if n else None

  out = ["| prompts | n | " + " | ".join(CHECKS) + " |", "|---|---|" + "---|" * len(CHECKS)]
  for g in sorted(sizes, key=lambda g: -(rate(g, "ALL") or 0)):
    cells = [f"{r:.2f}" if (r := rate(g, c)) is not None else "-" for c in CHECKS]
    out.append(f"| {g} | {sizes[g]} | " + " | ".join(cells) + " |")
  return "\n".join(out)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("log")
  p.add_argument("prompts_jsonl")
  p.add_argument("--out")
  a = p.parse_args(argv)
  with open(a.log) as f:
    rows = parse_rows(f.read())
  with open(a.prompts_jsonl) as f:
    specs = [json.loads(line)["spec"] for line in f if line.strip()]
  if not rows:
    sys.exit(f"eval_groups: no per-prompt rows found in {a.log}")
  if max(rows) >= len(specs):
    sys.exit(f"eval_groups: {a.log} has row {max(rows)} but {a.prompts_jsonl} has {len(specs)} specs")
  text = table(rows, specs)
  print(text)
  if a.out:
    with open(a.out, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
