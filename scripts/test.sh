#!/usr/bin/env bash
# Installs what the tests need, then runs the default (fast) suite on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Two workers, one test file each at a time (module fixtures are built once): compile-bound
# tests use one core each, so on CI's two cores this halves the wall time.
exec .venv/bin/python -m pytest -q -n "${SORAX_TEST_WORKERS:-2}" --dist loadfile "$@"
