"""A real install: the built wheel (not the checkout) samples from the shipped checkpoint with the
package's own safety settings, far from the repository."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from sorax.models import weights

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not weights.SHIPPED.is_file(), reason="no shipped checkpoint in this tree")
def test_built_wheel_samples_outside_the_checkout(tmp_path):
  dist, site, out = tmp_path / "dist", tmp_path / "site", tmp_path / "out"
  pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
  subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(ROOT)], check=True,
                 timeout=300, capture_output=True)
  (wheel,) = dist.glob("sorax-*.whl")
  subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                 timeout=300, capture_output=True)
  # The wheel's copy comes first on the path; dependencies come from this environment.
  env = {**os.environ, "PYTHONPATH": str(site)}
  code = ("import sys, sorax; from sorax.cli import main; "
          f"assert sorax.__file__.startswith({str(site)!r}), sorax.__file__; "
          f"sys.exit(main(['sample', '--prompt', 'large red circle on a navy background', "
          f"'--out', {str(out)!r}, '--steps', '2']))")
  r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                     text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-2000:]
  result = json.loads(r.stdout.strip().splitlines()[-1])
  assert result["watermark"] and result["c2pa"] and (out / "0.mp4").is_file()
