#!/usr/bin/env bash
# Installs sorax, then trains a tiny model on the built-in world, samples and scores it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sorax demo "$@"
