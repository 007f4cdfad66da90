"""sorax: a JAX/Flax reimplementation of Sora (text-to-video diffusion transformer)."""

from importlib import metadata as _metadata

try:
  __version__ = _metadata.version("sorax")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
  __version__ = "0.1.0"
