"""Every CLI generation verb writes files that `sorax detect` recognizes; refusals; off switches."""

import json

import numpy as np
import pytest

from sorax import cli
from sorax.data import world
from sorax.data.video_write import write_mp4
from tests.test_config import WORLD
from tests.test_train import TINY

SIZE = ["--frames", "9", "--height", "32", "--width", "32"]  # one watermark tile


def run(capsys, *argv):
  rc = cli.main(list(argv))
  out = capsys.readouterr()
  return rc, out.out, out.err


def detect(capsys, *files):
  rc, out, err = run(capsys, "detect", *map(str, files))
  assert rc == 0, err
  return [json.loads(line) for line in out.strip().splitlines()]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
  work = tmp_path_factory.mktemp("run") / "w"
  assert cli.main(["train", "--config", f"{WORLD}:demo", "--workdir", str(work), "--no-progress",
                   "--config.train.steps=1", *TINY]) == 0
  return work


def test_keys_create(capsys, tmp_path):
  rc, out, err = run(capsys, "keys", "create", "--dir", str(tmp_path / "k"))
  assert rc == 0, err
  made = json.loads(out)
  assert all((tmp_path / "k" / n).exists() for n in ("chain.pem", "signer.key", "root.pem"))
  assert made["root"].endswith("root.pem")
  rc, _, err = run(capsys, "keys", "create", "--dir", str(tmp_path / "k"))
  assert rc == 2 and "already exist" in err


def test_sample_outputs_are_detected(capsys, tmp_path, ckpt):
  out = tmp_path / "o"
  rc, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt",
                   "large red circle moving right on a navy background", "--out", str(out),
                   "--steps", "1", "--gif", "--png", *SIZE)
  assert rc == 0, err
  assert sorted(p.name for p in out.iterdir()) == ["0.gif", "0.mp4", "0.png"]
  for r in detect(capsys, out / "0.mp4", out / "0.gif", out / "0.png"):
    assert r["verdict"] == "sorax", r
    assert r["c2pa"]["valid"] and r["c2pa"]["trusted"] and r["c2pa"]["sealed"]
    assert r["c2pa"]["claims"]["model"].startswith("sorax-dit@")
    assert "prompt" not in r["c2pa"]["claims"]
    assert r["watermark"]["present"]


def test_eval_and_demo_outputs_are_detected(capsys, tmp_path, ckpt):
  rc, _, err = run(capsys, "eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "ev"),
                   "--num-prompts", "1", "--steps", "1")
  assert rc == 0, err
  from sorax.demo import run_demo
  assert run_demo(workdir=str(tmp_path / "demo"), out=str(tmp_path / "d"), steps=1,
                  num_prompts=1, overrides=tuple(TINY), from_scratch=True) == 0
  capsys.readouterr()
  for f in [tmp_path / "ev" / "0.mp4", tmp_path / "ev" / "0.gif", tmp_path / "d" / "0.mp4",
            tmp_path / "d" / "contact_sheet.png"]:
    r = detect(capsys, f)[0]
    assert r["c2pa"]["valid"] and r["verdict"] in ("sorax", "sorax-c2pa"), r


def test_detect_survives_reencoding_by_another_tool(capsys, tmp_path, ckpt):
  out = tmp_path / "o"
  assert run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "small blue square",
             "--out", str(out), "--steps", "1", *SIZE)[0] == 0
  from sorax.data.video_io import read_video
  write_mp4(tmp_path / "re.mp4", read_video(out / "0.mp4"), crf=23)  # manifest stripped
  r = detect(capsys, tmp_path / "re.mp4")[0]
  assert r["c2pa"]["state"] == "missing" and r["verdict"] == "sorax-watermark", r
  plain = tmp_path / "plain.mp4"
  rng = np.random.default_rng(0)
  write_mp4(plain, world.render(world.random_spec(rng, 32, 32, 9), 32, 32, 9))
  assert detect(capsys, plain)[0]["verdict"] == "not-detected"


def test_refused_prompt_writes_nothing(capsys, tmp_path, ckpt):
  rc, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "a n.u.d.e person",
                   "--out", str(tmp_path / "o"), "--steps", "1")
  assert rc == 3 and "refused" in err and "'sexual'" in err
  assert not (tmp_path / "o").exists()


def test_switches_off_are_said(capsys, tmp_path, ckpt):
  out = tmp_path / "o"
  rc, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "a red circle",
                   "--out", str(out), "--steps", "1", "--no-watermark", *SIZE)
  assert rc == 0 and "watermark is OFF" in err
  assert detect(capsys, out / "0.mp4")[0]["verdict"] == "sorax-c2pa"
  rc, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "a red circle",
                   "--out", str(out), "--steps", "1", "--no-c2pa", *SIZE)
  assert rc == 0 and "C2PA signing is OFF" in err
  assert detect(capsys, out / "0.mp4")[0]["verdict"] == "sorax-watermark"
  rc, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "a nude person",
                   "--out", str(out), "--steps", "1", "--safety", "experiments/safety.py:off",
                   *SIZE)
  assert rc == 0 and "content policy is OFF" in err
  rc, _, err = run(capsys, "sample", "--checkpoint", str(ckpt), "--prompt", "x", "--out",
                   str(out), "--safety.watermark.strenght=3")
  assert rc == 2 and "unknown config key 'watermark.strenght'" in err
