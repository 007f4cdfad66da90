import json

import jax
import numpy as np
import pytest

from sorax import config as config_lib
from sorax.data.latent_cache import (
  LatentCacheSource,
  cache_world,
  latent_dataset,
  write_latent_cache,
)
from sorax.data.pipeline import WorldSource
from sorax.models.codec import SpaceToDepthCodec
from sorax.models.text import Tokenizer
from tests.test_config import WORLD

CODEC = SpaceToDepthCodec()
ENCODE = jax.jit(CODEC.encode)
T, H, W = 2, 8, 8  # latent [2, 2, 2, 48]


def _examples(n, seed=0):
  rng = np.random.default_rng(seed)
  for i in range(n):
    yield {"video": rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8),
           "captions": {"terse": f"clip {i}", "descriptive": f"a long caption of clip {i}",
                        "alt": f"alt {i}"},
           "spec": json.dumps({"i": i})}


def _reference(n, seed=0):
  videos = np.stack([ex["video"] for ex in _examples(n, seed)])
  return np.asarray(CODEC.encode(videos.astype(np.float32) / 127.5 - 1.0))  # [n, t, h, w, c]


@pytest.fixture(scope="module")
def cache10(tmp_path_factory):
  out = tmp_path_factory.mktemp("lc") / "cache"
  manifest = write_latent_cache(out, _examples(10), ENCODE, batch_size=4, shard_size=4,
                                meta={"codec": "space_to_depth"}, progress=False)
  return out, manifest


def test_round_trip_keeps_latents_and_captions(cache10):
  out, _ = cache10
  src = LatentCacheSource(out)
  ref = _reference(10)
  assert len(src) == 10
  for i, ex in enumerate(_examples(10)):
    rec = src[i]
    assert rec["latent"].dtype == np.float32 and rec["latent"].shape == (2, 2, 2, 48)
    np.testing.assert_array_equal(rec["latent"], ref[i])
    assert rec["captions"] == ex["captions"] and rec["spec"] == ex["spec"]
  with pytest.raises(IndexError, match="out of range"):
    src[10]


def test_manifest_shards_and_stats(cache10):
  out, m = cache10
  assert json.loads((out / "cache.json").read_text()) == m
  assert m["count"] == 10 and m["latent_shape"] == [2, 2, 2, 48] and m["dtype"] == "float32"
  assert m["video_shape"] == [T, H, W, 3] and m["meta"] == {"codec": "space_to_depth"}
  assert m["caption_levels"] == ["alt", "descriptive", "terse"]
  assert m["shards"] == [f"latents-0000{i}-of-00003.array_record" for i in range(3)]
  assert sorted(p.name for p in out.iterdir()) == sorted(m["shards"] + ["cache.json"])
  ref = _reference(10).reshape(-1, 48)
  np.testing.assert_allclose(m["stats"]["mean"], ref.mean(0), atol=1e-5)
  np.testing.assert_allclose(m["stats"]["std"], ref.std(0), atol=1e-5)
  np.testing.assert_allclose(m["stats"]["std_all"], ref.std(), atol=1e-5)
  assert m["stats"]["positions"] == ref.shape[0]
  assert not list(out.parent.glob(".cache.tmp-*"))  # no temp dir left behind


def test_float16_storage(tmp_path):
  m = write_latent_cache(tmp_path / "c", _examples(3), ENCODE, batch_size=2, dtype="float16",
                         progress=False)
  assert m["dtype"] == "float16" and len(m["shards"]) == 1
  rec = LatentCacheSource(tmp_path / "c")[2]
  assert rec["latent"].dtype == np.float16
  np.testing.assert_allclose(rec["latent"], _reference(3)[2], rtol=1e-3, atol=1e-3)


def _ds(path, **kw):
  args = {"text_len": 16, "batch_size": 4, "caption_levels": ["terse", "alt"],
          "caption_weights": [0.5, 0.5], "seed": 3}
  return latent_dataset(path, Tokenizer(), **{**args, **kw})


def test_dataset_batches_are_deterministic_and_resumable(cache10):
  out, _ = cache10
  it = iter(_ds(out))
  b = next(it)
  assert b["latent"].shape == (4, 2, 2, 2, 48) and b["latent"].dtype == np.float32
  assert b["ids"].shape == (4, 16) and b["ids"].dtype == np.int32
  assert b["mask"].shape == (4, 16) and b["mask"].dtype == bool and b["mask"][:, 0].all()
  # Each latent is one of the cached clips; the order is shuffled and fixed by the seed.
  ref = _reference(10).reshape(10, -1)
  idx = [int(np.argmin(np.abs(ref - x.reshape(1, -1)).sum(1))) for x in b["latent"]]
  np.testing.assert_array_equal(b["latent"], _reference(10)[idx])
  first = [b] + [next(it) for _ in range(5)]  # crosses epoch boundaries (10 clips, batch 4)
  again = iter(_ds(out))
  for x in first:
    y = next(again)
    for k in ("latent", "ids", "mask"):
      np.testing.assert_array_equal(x[k], y[k])
  other = next(iter(_ds(out, seed=4)))
  assert not np.array_equal(other["latent"], b["latent"])

  state = it.get_state()
  after = [next(it) for _ in range(2)]
  resumed = iter(_ds(out))
  resumed.set_state(state)
  for x in after:
    y = next(resumed)
    for k in ("latent", "ids", "mask"):
      np.testing.assert_array_equal(x[k], y[k])


def test_dataset_caption_choice_epochs_and_hosts(cache10):
  out, _ = cache10
  tok = Tokenizer()
  texts = {tok.decode(ids) for b in _ds(out, num_epochs=8, caption_levels=["alt"],
                                        caption_weights=None) for ids in b["ids"]}
  assert texts and all(t.startswith("alt ") for t in texts)
  assert len(list(_ds(out, num_epochs=2))) == 5  # 20 records / batch 4, then the end
  h0 = next(iter(_ds(out, shard_index=0, shard_count=2, shuffle=False)))["latent"]
  h1 = next(iter(_ds(out, shard_index=1, shard_count=2, shuffle=False)))["latent"]
  np.testing.assert_array_equal(h0, _reference(10)[[0, 2]])
  np.testing.assert_array_equal(h1, _reference(10)[[1, 3]])
  with pytest.raises(ValueError, match="not in cache"):
    _ds(out, caption_levels=["poem"], caption_weights=None)
  with pytest.raises(ValueError, match="caption_weights"):
    _ds(out, caption_weights=[1.0])
  with pytest.raises(ValueError, match="not divisible"):
    _ds(out, shard_count=3)


def test_missing_or_corrupt_cache_errors_name_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    LatentCacheSource(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="cache.json"):
    LatentCacheSource(tmp_path / "empty")
  bad = tmp_path / "bad"
  write_latent_cache(bad, _examples(2), ENCODE, batch_size=2, progress=False)
  (bad / "cache.json").write_text("{not json")
  with pytest.raises(ValueError, match="corrupt"):
    LatentCacheSource(bad)
  gone = tmp_path / "gone"
  m = write_latent_cache(gone, _examples(2), ENCODE, batch_size=2, progress=False)
  (gone / m["shards"][0]).unlink()
  with pytest.raises(FileNotFoundError, match="missing shard"):
    LatentCacheSource(gone)


def test_refuses_overwrite_unless_asked(tmp_path):
  out = tmp_path / "c"
  write_latent_cache(out, _examples(2), ENCODE, batch_size=2, progress=False)
  with pytest.raises(FileExistsError, match="overwrite=True"):
    write_latent_cache(out, _examples(3), ENCODE, batch_size=2, progress=False)
  assert LatentCacheSource(out).manifest["count"] == 2
  write_latent_cache(out, _examples(3), ENCODE, batch_size=2, overwrite=True, progress=False)
  assert len(LatentCacheSource(out)) == 3
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
  (tmp_path / "e").mkdir()  # an empty directory is fine to fill
  write_latent_cache(tmp_path / "e", _examples(1), ENCODE, batch_size=2, progress=False)
  with pytest.raises(TypeError, match="JSON"):
    write_latent_cache(tmp_path / "m", _examples(1), ENCODE, meta={"x": object()})


def test_failing_encode_leaves_nothing(tmp_path):
  calls = []

  def flaky(x):
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError("device lost")
    return ENCODE(x)

  with pytest.raises(RuntimeError, match="device lost"):
    write_latent_cache(tmp_path / "c", _examples(10), flaky, batch_size=2, shard_size=2,
                       progress=False)
  assert list(tmp_path.iterdir()) == []
  # Replacing an existing cache: a failure keeps the old one intact.
  write_latent_cache(tmp_path / "c", _examples(2), ENCODE, batch_size=2, progress=False)
  calls.clear()
  with pytest.raises(RuntimeError, match="device lost"):
    write_latent_cache(tmp_path / "c", _examples(10), flaky, batch_size=2, overwrite=True,
                       progress=False)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
  assert len(LatentCacheSource(tmp_path / "c")) == 2


def test_bad_examples_are_named(tmp_path):
  ex = next(_examples(1))
  with pytest.raises(ValueError, match="example 0: video must be uint8"):
    write_latent_cache(tmp_path / "a", [{**ex, "video": ex["video"] / 255}], ENCODE,
                       progress=False)
  small = {**ex, "video": ex["video"][:, :4]}
  with pytest.raises(ValueError, match="example 1: video shape"):
    write_latent_cache(tmp_path / "b", [ex, small], ENCODE, progress=False)
  with pytest.raises(ValueError, match="no examples"):
    write_latent_cache(tmp_path / "c", [], ENCODE, progress=False)
  assert list(tmp_path.iterdir()) == []


def test_cache_world_matches_world_source(tmp_path):
  data = config_lib.load_config(f"{WORLD}:demo", [
      "--config.data.height=8", "--config.data.width=8", "--config.data.frames=2"]).data
  m = cache_world(tmp_path / "w", data, ENCODE, num_clips=5, seed=7, batch_size=4,
                  meta={"codec": {"name": "space_to_depth"}}, progress=False)
  assert m["count"] == 5 and m["meta"]["world"]["seed"] == 7
  assert m["meta"]["codec"] == {"name": "space_to_depth"}
  assert m["caption_levels"] == ["alt", "descriptive", "terse"]
  src, world = LatentCacheSource(tmp_path / "w"), WorldSource(
      seed=7, num_clips=5, height=8, width=8, frames=2, caption_levels=["alt"])
  for i in (0, 4):
    video = world[i]["video"][None].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(src[i]["latent"], np.asarray(CODEC.encode(video))[0])
    assert src[i]["captions"]["alt"] == world[i]["caption"]
    assert set(json.loads(src[i]["spec"])) == {"background", "wall", "objects"}
