"""Runs the tests marked `slow` (multi-process, resharding, preemption, VAE-latent training,
the memory planner's compiles: minutes each on two cores, so outside the default suite's
10-minute CI budget) and prints one JSON line: passed, failed, skipped, seconds.

    python benchmarks/slow_tests.py [-k EXPR]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("-k", default=None, help="pytest -k expression, to run some of them")
  args = ap.parse_args(argv)
  cmd = [sys.executable, "-m", "pytest", "-q", "-m", "slow", "-p", "no:cacheprovider", "tests"]
  if args.k:
    cmd += ["-k", args.k]
  t0 = time.time()
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  seconds = time.time() - t0
  tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
  counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", tail)}
  if proc.returncode not in (0, 5):
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-2000:])
  print(json.dumps({"benchmark": "slow_tests", "passed": counts.get("passed", 0),
                    "failed": counts.get("failed", 0) + counts.get("error", 0),
                    "skipped": counts.get("skipped", 0), "seconds": round(seconds, 1),
                    "returncode": proc.returncode}))
  return 0 if proc.returncode in (0, 5) else 1


if __name__ == "__main__":
  sys.exit(main())
