"""Experiment configs: `experiments/x.py:arg` files with `get_config(arg)` + dotted overrides.

    load_config("experiments/world.py:demo", ["--config.optim.lr=3e-4"])

Configs are locked: an override or a code path that names a key the config lacks is an error
that names the key (and suggests close matches), never a silently added field.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import pathlib
from typing import Any, Sequence

import ml_collections


class ConfigError(ValueError):
  pass


def _flat_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  out = []
  for k, v in cfg.items():
    key = f"{prefix}{k}"
    out.append(key)
    if isinstance(v, ml_collections.ConfigDict):
      out.extend(_flat_keys(v, key + "."))
  return out


def load_file(spec: str) -> ml_collections.ConfigDict:
  """'path/to/file.py[:arg]' -> get_config(arg) (arg may be absent)."""
  path, _, arg = spec.partition(":")
  file = pathlib.Path(path)
  if not file.is_file():
    raise ConfigError(f"config file {path!r} not found")
  mod_spec = importlib.util.spec_from_file_location(f"sorax_config_{file.stem}", file)
  module = importlib.util.module_from_spec(mod_spec)
  try:
    mod_spec.loader.exec_module(module)
  except Exception as e:  # a broken config file is a config error, with its cause
    raise ConfigError(f"config file {path!r} failed to load: {e}") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path!r} has no get_config(arg) function")
  try:
    cfg = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise ConfigError(f"config {spec!r}: {e}") from e
  if not isinstance(cfg, ml_collections.ConfigDict):
    raise ConfigError(f"get_config in {path!r} must return an ml_collections.ConfigDict")
  return cfg


def _parse_value(text: str, current: Any, key: str) -> Any:
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text  # bare strings need no quotes: --config.model.attention=cudnn
  if current is None or value is None:
    return value
  if isinstance(current, bool):
    if isinstance(value, str) and value.lower() in ("true", "false"):
      return value.lower() == "true"
    if not isinstance(value, bool):
      raise ConfigError(f"config key {key!r} is a bool; got {text!r}")
    return value
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
    return type(current)(value)
  if isinstance(current, (int, float, str)) and type(value) is not type(current):
    raise ConfigError(
        f"config key {key!r} expects {type(current).__name__}, got {text!r}")
  return value


def apply_overrides(cfg: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
  """Applies '--config.a.b=value' (or 'a.b=value') strings in place."""
  keys = _flat_keys(cfg)
  for item in overrides:
    body = item[len("--config."):] if item.startswith("--config.") else item
    if "=" not in body:
      raise ConfigError(f"override {item!r} must look like --config.key=value")
    key, text = body.split("=", 1)
    if key not in keys:
      near = difflib.get_close_matches(key, keys, n=3)
      hint = f"; did you mean {', '.join(near)}?" if near else ""
      raise ConfigError(f"unknown config key {key!r}{hint}")
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
      node = node[p]
    if isinstance(node[leaf], ml_collections.ConfigDict):
      raise ConfigError(f"config key {key!r} is a group; set one of its fields instead")
    with node.unlocked():
      node[leaf] = _parse_value(text, node[leaf], key)


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  cfg = load_file(spec)
  apply_overrides(cfg, overrides)
  cfg.lock()
  return cfg


def to_json(cfg: ml_collections.ConfigDict) -> str:
  return cfg.to_json(sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  cfg = ml_collections.ConfigDict(json.loads(text))
  cfg.lock()
  return cfg
