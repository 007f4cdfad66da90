"""Wan2.1 t2v DiT weights into a sorax DiT (sorax/export/wan.py): a randomly initialised
Wan-layout model built in PyTorch (tests/wan_reference.py, transcribed from the public Wan2.1
code) and the sorax DiT holding its imported weights give the same velocity. Skipped without
torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from sorax import patchify as P  # noqa: E402
from sorax.export import wan  # noqa: E402

from tests.wan_reference import WanT2V  # noqa: E402

torch.set_num_threads(1)

KW = dict(patch_size=(1, 2, 2), text_len=7, in_dim=4, out_dim=4, dim=48, ffn_dim=80,
          text_dim=24, num_heads=4, num_layers=2)


def _wan_model(seed=0, **over):
  torch.manual_seed(seed)
  m = WanT2V(**{**KW, **over}).eval()
  with torch.no_grad():  # every tensor random (Wan zeroes its head): nothing hides a mix-up
    for name, p in m.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.copy_(1 + 0.2 * torch.randn_like(p))
      else:
        p.copy_(0.15 * torch.randn_like(p))
  return m


def _compare(m, frames=3, h=4, w=6, seed=1):
  rng = np.random.default_rng(seed)
  c = KW["in_dim"]
  x = rng.normal(size=(2, c, frames, h, w)).astype(np.float32)  # Wan: [B, C, F, H, W]
  sigma = np.array([0.37, 0.81], np.float32)
  ctx = rng.normal(size=(2, 5, KW["text_dim"])).astype(np.float32)
  with torch.no_grad():
    want = m(torch.from_numpy(x), torch.from_numpy(sigma * 1000), torch.from_numpy(ctx)).numpy()
  cfg, patch, tensors = wan.wan_to_sorax(m.state_dict(), num_heads=KW["num_heads"])
  dit = wan.load_dit(cfg, tensors)
  lat = jnp.asarray(x.transpose(0, 2, 3, 4, 1))  # sorax latents [B, T, H, W, C]
  tokens, pos = P.patchify_batch(lat, patch)
  text = np.concatenate([ctx, np.zeros((2, KW["text_len"] - 5, KW["text_dim"]), np.float32)], 1)
  v = dit(tokens, jnp.asarray(pos), jnp.asarray(sigma), jnp.asarray(text),
          jnp.ones((2, KW["text_len"]), bool))
  got = np.asarray(P.unpatchify_batch(v, lat.shape[1:], patch)).transpose(0, 4, 1, 2, 3)
  return got, want


def test_imported_wan_dit_matches_the_wan_reference():
  got, want = _compare(_wan_model())
  err = np.abs(got - want).max() / np.abs(want).max()
  assert err < 1e-4, err
  assert np.abs(want).max() > 0.1  # a real signal, not zeros matching zeros


def test_rope_pairing_is_what_the_permutation_fixes():
  """Without permuting q/k the imported model differs (the RoPE pairing matters): the test
  above would catch a wrong permutation."""
  m = _wan_model(seed=3)
  orig = wan.rope_permutation
  try:
    wan.rope_permutation = lambda k: np.arange(k)
    got, want = _compare(m)
  finally:
    wan.rope_permutation = orig
  assert np.abs(got - want).max() / np.abs(want).max() > 1e-3


def test_wan_config_read_from_shapes():
  m = _wan_model()
  cfg, patch = wan.wan_config(m.state_dict(), num_heads=4)
  assert (cfg.width, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.text_width, cfg.token_dim) == (
      48, 2, 4, 80, 24, 16)
  assert patch == (1, 2, 2) and cfg.attn_bias and cfg.qk_norm_over == "width"


def test_bad_state_dicts_get_clear_errors():
  sd = _wan_model().state_dict()
  with pytest.raises(wan.WanImportError, match="not a Wan2.1 DiT"):
    wan.wan_to_sorax({k: v for k, v in sd.items() if not k.startswith("head.")}, num_heads=4)
  with pytest.raises(wan.WanImportError, match="heads"):
    wan.wan_to_sorax(sd, num_heads=5)
  with pytest.raises(wan.WanImportError, match="image-to-video"):
    wan.wan_to_sorax({**sd, "img_emb.proj.0.weight": torch.zeros(3)}, num_heads=4)
  with pytest.raises(wan.WanImportError, match="no place"):
    wan.wan_to_sorax({**sd, "blocks.0.extra": torch.zeros(3)}, num_heads=4)


def test_import_file_round_trip(tmp_path):
  from safetensors.torch import save_file
  m = _wan_model()
  src = tmp_path / "diffusion_pytorch_model.safetensors"
  save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(src))
  sd = wan.read_state_dict(src)
  cfg, patch, tensors = wan.wan_to_sorax(sd, num_heads=4)
  out = wan.save_dit(tmp_path / "dit.safetensors", cfg, patch, tensors, source=str(src))
  cfg2, patch2, tensors2 = wan.read_dit(out)
  assert cfg2 == cfg and patch2 == patch
  assert all(np.array_equal(tensors[k], tensors2[k]) for k in tensors)
  with pytest.raises(wan.WanImportError, match="not found"):
    wan.read_state_dict(tmp_path / "missing.safetensors")


def test_import_wan_cli(tmp_path, capsys):
  import json

  from safetensors.torch import save_file

  from sorax.cli import main
  src = tmp_path / "wan.safetensors"
  save_file({k: v.contiguous() for k, v in _wan_model().state_dict().items()}, str(src))
  assert main(["import-wan", str(src), "--num-heads", "4", "--out", str(tmp_path / "d.st")]) == 0
  line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert (line["width"], line["depth"], line["heads"]) == (48, 2, 4)
  assert main(["import-wan", str(src), "--num-heads", "5", "--out", str(tmp_path / "e.st")]) == 2
  assert "heads" in capsys.readouterr().err and not (tmp_path / "e.st").exists()
