"""Tests run on CPU with 8 simulated devices, so mesh tests need no accelerator."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
  flags += " --xla_force_host_platform_device_count=8"
# Test programs are tiny and compiled once each: LLVM's optimizations cost more than they save
# (the suite runs ~30% faster on two cores). Numerics stay within every test's tolerance.
if "xla_backend_optimization_level" not in flags:
  flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = flags.strip()

# C2PA test keys go to a per-session folder, never the user's ~/.sorax/keys.
if "SORAX_KEY_DIR" not in os.environ:
  import tempfile

  os.environ["SORAX_KEY_DIR"] = os.path.join(tempfile.mkdtemp(prefix="sorax-test-keys-"), "keys")

# One persistent XLA cache per session: many tests build a fresh Trainer/Pipeline whose jitted
# init and steps are the same programs; on two CPU cores recompiling them is most of the suite.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile

  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="sorax-test-xla-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
