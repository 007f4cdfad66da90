"""The captioner's bank of DiT-restyled world clips: built, resumed, refused."""

from __future__ import annotations

import numpy as np
import pytest

from sorax.data import world
from sorax.train import captioner_bank as bank_lib
from tests.test_train import tiny_pipeline


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  d = tmp_path_factory.mktemp("bank")
  tiny_pipeline(d, 2)
  return d


def test_bank_is_built_in_chunks_and_resumed(workdir, tmp_path):
  out = tmp_path / "bank.npz"
  args = ["--checkpoint", str(workdir), "--out", str(out), "--chunk", "2", "--seed", "5",
          "--strength", "0.3", "0.5"]
  bank_lib.main(["--clips", "3", *args])
  first = bank_lib.load_bank(out)
  assert first["video"].shape == (3, 2, 16, 16, 3) and first["video"].dtype == np.uint8
  assert list(first["index"]) == [0, 1, 2] and set(first["seed"]) == {5}
  assert ((first["strength"] >= 0.3) & (first["strength"] <= 0.5)).all()
  bank_lib.main(["--clips", "5", *args])  # resumes: the first 3 are kept, 2 are added
  more = bank_lib.load_bank(out)
  assert list(more["index"]) == [0, 1, 2, 3, 4]
  np.testing.assert_array_equal(more["video"][:3], first["video"])
  with pytest.raises(ValueError, match="seed"):
    bank_lib.main(["--clips", "6", *args[:-5], "--seed", "6"])


def test_strength_zero_banks_the_world_clips_themselves(workdir, tmp_path):
  out = tmp_path / "bank.npz"
  bank_lib.main(["--checkpoint", str(workdir), "--out", str(out), "--clips", "2",
                 "--seed", "5", "--strength", "0", "0"])
  b = bank_lib.load_bank(out)
  for i in range(2):  # SDEdit from t = 0 returns its start; the pixel codec is lossless
    np.testing.assert_array_equal(b["video"][i], world.make_clip(5, i, 16, 16, 2).video)


def test_a_missing_or_foreign_bank_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="captioner_bank"):
    bank_lib.load_bank(tmp_path / "none.npz")
  np.savez(tmp_path / "x.npz", video=np.zeros((1, 2, 4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match="missing arrays"):
    bank_lib.load_bank(tmp_path / "x.npz")
