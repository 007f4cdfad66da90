import numpy as np
import pytest

from sorax import config as config_lib
from sorax.data.pipeline import WorldSource, world_dataset
from sorax.models.text import Tokenizer
from tests.test_config import WORLD


def _cfg(**over):
  cfg = config_lib.load_config(f"{WORLD}:demo", [
      "--config.data.height=16", "--config.data.width=24", "--config.data.frames=4",
      "--config.data.batch_size=3"] + [f"--config.data.{k}={v}" for k, v in over.items()])
  return cfg.data


def test_batches_have_the_promised_shapes():
  it = iter(world_dataset(_cfg(), Tokenizer()))
  b = next(it)
  assert b["video"].shape == (3, 4, 16, 24, 3) and b["video"].dtype == np.uint8
  assert b["ids"].shape == (3, 48) and b["ids"].dtype == np.int32
  assert b["mask"].dtype == bool and b["mask"][:, 0].all()


def test_deterministic_and_resumable_from_state():
  tok = Tokenizer()
  a = iter(world_dataset(_cfg(), tok))
  b = iter(world_dataset(_cfg(), tok))
  first = [next(a) for _ in range(3)]
  np.testing.assert_array_equal(next(b)["video"], first[0]["video"])
  state = a.get_state()
  after = next(a)
  c = iter(world_dataset(_cfg(), tok))
  c.set_state(state)
  resumed = next(c)
  np.testing.assert_array_equal(resumed["video"], after["video"])
  np.testing.assert_array_equal(resumed["ids"], after["ids"])
  assert not np.array_equal(first[1]["video"], first[2]["video"])


def test_hosts_read_disjoint_shards():
  tok = Tokenizer()
  whole = next(iter(world_dataset(_cfg(batch_size=4), tok)))["video"]
  h0 = next(iter(world_dataset(_cfg(batch_size=4), tok, shard_index=0, shard_count=2)))["video"]
  h1 = next(iter(world_dataset(_cfg(batch_size=4), tok, shard_index=1, shard_count=2)))["video"]
  np.testing.assert_array_equal(h0, whole[0::2])
  np.testing.assert_array_equal(h1, whole[1::2])


def test_caption_levels_follow_weights_and_errors():
  src = WorldSource(seed=0, num_clips=400, height=16, width=16, frames=2,
                    caption_levels=["terse", "alt"], caption_weights=[3, 1])
  levels = [src[i]["level"] for i in range(400)]
  assert 0.65 < levels.count("terse") / 400 < 0.85
  with pytest.raises(IndexError, match="out of range"):
    src[400]
  with pytest.raises(ValueError, match="unknown caption levels"):
    WorldSource(seed=0, num_clips=1, height=8, width=8, frames=1, caption_levels=["poem"])
  with pytest.raises(ValueError, match="caption_weights"):
    WorldSource(seed=0, num_clips=1, height=8, width=8, frames=1, caption_levels=["alt"],
                caption_weights=[-1])
