"""Tests run on CPU with 8 simulated devices, so mesh tests need no accelerator."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
  os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=8").strip()

# C2PA test keys go to a per-session folder, never the user's ~/.sorax/keys.
if "SORAX_KEY_DIR" not in os.environ:
  import tempfile

  os.environ["SORAX_KEY_DIR"] = os.path.join(tempfile.mkdtemp(prefix="sorax-test-keys-"), "keys")
