"""The `sorax` command: bad input gets one clear error and exit code 2."""

import json

import numpy as np
import pytest

from sorax import cli
from sorax.data import world
from sorax.data.video_io import write_mp4
from tests.test_config import WORLD


def run(capsys, *argv):
  rc = cli.main(list(argv))
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_cli_choices_match_the_library():
  # The CLI lists them without importing jax; these are the lists the library checks against.
  from sorax.cli_common import JUDGE_NAMES, SAMPLER_NAMES
  from sorax.diffusion.samplers import SAMPLERS
  from sorax.sample import JUDGES
  assert set(SAMPLER_NAMES) == set(SAMPLERS)
  assert JUDGE_NAMES == JUDGES


def test_unknown_config_key(capsys, tmp_path):
  rc, _, err = run(capsys, "train", "--config", f"{WORLD}:demo", "--workdir", str(tmp_path),
                   "--config.model.widht=64")
  assert rc == 2 and "unknown config key 'model.widht'" in err and "model.width" in err
  assert not (tmp_path / "checkpoints").exists()  # nothing half written


def test_bad_config_file_and_variant(capsys, tmp_path):
  rc, _, err = run(capsys, "train", "--config", "experiments/nope.py", "--workdir", str(tmp_path))
  assert rc == 2 and "not found" in err
  rc, _, err = run(capsys, "train", "--config", f"{WORLD}:giant", "--workdir", str(tmp_path))
  assert rc == 2 and "unknown variant 'giant'" in err


def test_sample_errors(capsys, tmp_path):
  rc, _, err = run(capsys, "sample", "--checkpoint", str(tmp_path / "none"), "--prompt", "x",
                   "--out", str(tmp_path / "o"))
  assert rc == 2 and "not found" in err
  rc, _, err = run(capsys, "sample", "--checkpoint", str(tmp_path), "--prompts",
                   str(tmp_path / "p.txt"), "--out", str(tmp_path / "o"))
  assert rc == 2 and "prompts file" in err and "not found" in err
  (tmp_path / "empty.txt").write_text("\n\n")
  rc, _, err = run(capsys, "sample", "--checkpoint", str(tmp_path), "--prompts",
                   str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o"))
  assert rc == 2 and "has no prompts" in err
  rc, _, err = run(capsys, "sample", "--checkpoint", str(tmp_path), "--prompt", "x",
                   "--out", str(tmp_path / "o"), "--frames", "0")
  assert rc == 2 and "--frames must be a positive integer" in err
  rc, _, err = run(capsys, "sample", "--checkpoint", str(tmp_path), "--prompt", "x",
                   "--out", str(tmp_path / "o"), "--best-of", "0")
  assert rc == 2 and "--best-of must be a positive integer" in err
  with pytest.raises(SystemExit):  # argparse: both --prompt and --prompts
    cli.main(["sample", "--checkpoint", "x", "--prompt", "a", "--prompts", "b", "--out", "o"])
  with pytest.raises(SystemExit):  # overrides only for train
    cli.main(["score", "--videos", "v", "--prompts", "p", "--config.x=1"])


def test_score_ground_truth_folder(capsys, tmp_path):
  rng = np.random.default_rng(0)
  lines = []
  for i in range(4):
    spec = world.random_spec(rng, 48, 48, 16)
    write_mp4(tmp_path / f"{i}.mp4", world.render(spec, 48, 48, 16))
    lines.append(json.dumps({"prompt": world.caption(spec, "terse", rng)}) if i % 2
                 else json.dumps(spec.to_json()))
  (tmp_path / "specs.jsonl").write_text("\n".join(lines) + "\n")
  rc, out, err = run(capsys, "score", "--videos", str(tmp_path), "--prompts",
                     str(tmp_path / "specs.jsonl"))
  assert rc == 0, err
  rates = json.loads(out)
  assert rates["all_right"] == 1.0 and rates["n"] == 4


def test_score_errors(capsys, tmp_path):
  (tmp_path / "specs.jsonl").write_text('{"background": "pink", "wall": false, "objects": []}\n')
  rc, _, err = run(capsys, "score", "--videos", str(tmp_path), "--prompts",
                   str(tmp_path / "specs.jsonl"))
  assert rc == 2 and "line 1" in err
  (tmp_path / "specs.jsonl").write_text('{"prompt": "large red circle on a navy background"}\n')
  rc, _, err = run(capsys, "score", "--videos", str(tmp_path), "--prompts",
                   str(tmp_path / "specs.jsonl"))
  assert rc == 2 and "missing" in err and "0.mp4" in err
  (tmp_path / "0.mp4").write_bytes(b"")
  rc, _, err = run(capsys, "score", "--videos", str(tmp_path), "--prompts",
                   str(tmp_path / "specs.jsonl"))
  assert rc == 2 and "0.mp4" in err and "empty" in err


def test_train_sample_score_end_to_end(capsys, tmp_path):
  from tests.test_train import TINY
  work = tmp_path / "run"
  rc, out, err = run(capsys, "train", "--config", f"{WORLD}:demo", "--workdir", str(work),
                     "--no-progress", "--config.train.steps=2", *TINY)
  assert rc == 0, err
  assert json.loads(out.strip().splitlines()[-1])["workdir"] == str(work)
  prompts = tmp_path / "prompts.txt"
  prompts.write_text("large red circle moving right on a navy background\n\n"
                     "small blue square on a black background\n")
  rc, out, err = run(capsys, "sample", "--checkpoint", str(work), "--prompts", str(prompts),
                     "--out", str(tmp_path / "out"), "--frames", "2", "--height", "16",
                     "--width", "24", "--steps", "2", "--gif")
  assert rc == 0, err
  names = sorted(p.name for p in (tmp_path / "out").iterdir())
  assert names == ["0.gif", "0.mp4", "2.gif", "2.mp4"]  # <line index>.mp4, blank line skipped
  assert json.loads(out.strip().splitlines()[-1])["samples_drawn"] == 2
  from sorax.data.video_io import read_video
  assert read_video(tmp_path / "out" / "2.mp4").shape == (2, 16, 24, 3)
  rc, out, err = run(capsys, "eval", "--checkpoint", str(work), "--out", str(tmp_path / "ev"),
                     "--num-prompts", "2", "--steps", "2", "--best-of", "2")
  assert rc == 0, err
  summary = json.loads(out.strip().splitlines()[-1])
  assert summary["rates"]["n"] == 2 and 0.0 <= summary["all_right"] <= 1.0
  assert summary["samples_drawn"] == 4  # best of 2, two prompts
  rc, out, err = run(capsys, "score", "--videos", str(tmp_path / "ev"), "--prompts",
                     str(tmp_path / "ev" / "prompts.jsonl"))
  assert rc == 0, err
  assert json.loads(out)["all_right"] == summary["all_right"]
