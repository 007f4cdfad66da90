#!/usr/bin/env bash
# Installs what the tests need, then runs the default (fast) suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
