import pathlib

import pytest

from sorax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORLD = str(ROOT / "experiments" / "world.py")


def test_variants_load_and_are_locked():
  for v in ("demo", "small", "base"):
    cfg = config_lib.load_config(f"{WORLD}:{v}")
    assert cfg.variant == v
  with pytest.raises(AttributeError):
    cfg.not_a_key = 1


def test_overrides_are_typed():
  cfg = config_lib.load_config(f"{WORLD}:demo", [
      "--config.optim.lr=3e-4", "--config.model.depth=2", "--config.model.attention=cudnn",
      "--config.model.scan_layers=false", "--config.optim.b1=1", "--config.model.patch=[1,1,1]"])
  assert cfg.optim.lr == 3e-4 and cfg.model.depth == 2 and cfg.model.attention == "cudnn"
  assert cfg.model.scan_layers is False and cfg.optim.b1 == 1.0 and list(cfg.model.patch) == [1, 1, 1]


@pytest.mark.parametrize("override, message", [
    ("--config.model.widht=3", r"unknown config key 'model.widht'; did you mean model.width"),
    ("--config.nope=3", r"unknown config key 'nope'"),
    ("--config.model.depth=deep", r"'model.depth' expects int"),
    ("--config.model=3", r"is a group"),
    ("--config.model.depth", r"must look like --config.key=value"),
])
def test_bad_overrides_are_clear_errors(override, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.load_config(f"{WORLD}:demo", [override])


def test_bad_files_and_variants(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="not found"):
    config_lib.load_config("experiments/missing.py")
  with pytest.raises(config_lib.ConfigError, match="unknown variant 'huge'"):
    config_lib.load_config(f"{WORLD}:huge")
  f = tmp_path / "x.py"
  f.write_text("X = 1\n")
  with pytest.raises(config_lib.ConfigError, match="no get_config"):
    config_lib.load_config(str(f))


def test_json_round_trip():
  cfg = config_lib.load_config(f"{WORLD}:small")
  back = config_lib.from_json(config_lib.to_json(cfg))
  assert back.model.width == cfg.model.width and list(back.mesh.rules[0]) == list(cfg.mesh.rules[0])


def test_finetune_variant_is_the_shipped_models_recipe():
  """experiments/world.py:finetune trains the shipped checkpoint further: its model, codec, data
  and losses are the ones in the shipped file's metadata (else init_from would not fit, or the
  run would train another recipe), and it starts from that file."""
  import json

  from sorax.models import weights
  cfg = config_lib.load_config(f"{WORLD}:finetune")
  shipped = json.loads(weights.read_metadata(weights.SHIPPED)["config"])

  def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
      out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
  ours, theirs = flat(cfg.to_dict()), flat(shipped)
  keys = [k for k in theirs if k.split(".")[0] in ("model", "codec", "data", "diffusion",
                                                   "conditioning")]
  assert keys and {k: ours.get(k) for k in keys} == {k: theirs[k] for k in keys}
  assert pathlib.Path(cfg.train.init_from).resolve() == weights.SHIPPED.resolve()
  assert cfg.optim.hold_steps > 0 and not cfg.optim.ema_warmup
