"""Export to other frameworks (docs/export_layout.md).

- `sorax.export.torch_ref`: a PyTorch reference of the DiT, the text encoder and the VAE decoder
  that loads `sorax export` safetensors files (needs the `torch` extra; imports no JAX).
- `sorax.export.serving`: StableHLO (`jax.export`) of the text encoder, denoiser and decoder with
  a symbolic batch, runnable without the model code (`sorax export --format stablehlo`).

The weights files themselves are written and read by `sorax.models.weights`.
Nothing is imported here, so `import sorax.export.torch_ref` pulls in neither JAX nor Flax.
"""
