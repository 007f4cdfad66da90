#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: create it, copy this repo to every worker, install sorax with
# JAX for TPU in ~/sorax/.venv, then run `sorax train` on all workers at once: one JAX process
# per worker (on a TPU VM, JAX finds the other workers itself).
#
# Usage:
#   launch/tpu_vm.sh --name NAME --zone ZONE --config CONFIG --workdir DIR [options] \
#     [-- OVERRIDES...]
#
#   --name NAME               TPU VM name (required)
#   --zone ZONE               e.g. us-west4-a (required)
#   --config CONFIG           experiments/FILE.py[:arg] (required)
#   --workdir DIR             run folder on the workers, relative to ~/sorax (required)
#   --accelerator-type TYPE   default v5litepod-16
#   --version VERSION         TPU software version, default v2-alpha-tpuv5-lite (v5e);
#                             v2-alpha-tpuv5 for v5p, v2-alpha-tpuv6e for v6e,
#                             tpu-ubuntu2204-base for v4
#   --project PROJECT         default: gcloud's configured project
#   --no-create               use an existing TPU VM NAME
#   --delete-after            delete the TPU VM when the script ends (also after a failure)
#   --dry-run                 print the commands, one per line, and run nothing
#   -h, --help                this message
#   -- OVERRIDES...           --config.key=value arguments for `sorax train`
#                             (a --config.key=value before `--` is passed through too)
#
# Example:
#   launch/tpu_vm.sh --dry-run --name sorax-v5e --zone us-west4-a \
#     --config experiments/world.py:base --workdir runs/base -- --config.mesh.shape.fsdp=4
set -euo pipefail
SCRIPT=${BASH_SOURCE[0]}
ROOT=$(cd "$(dirname "$SCRIPT")/.." && pwd)
source "$ROOT/launch/common.sh"

NAME= ZONE= CONFIG= WORKDIR= PROJECT= NO_CREATE=0 DELETE_AFTER=0
ACCELERATOR_TYPE=v5litepod-16 VERSION=v2-alpha-tpuv5-lite
while (($#)); do
  case $1 in
    --config.*) OVERRIDES+=("$1"); shift ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --name) need_value "$@"; NAME=$2; shift 2 ;;
    --zone) need_value "$@"; ZONE=$2; shift 2 ;;
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --accelerator-type) need_value "$@"; ACCELERATOR_TYPE=$2; shift 2 ;;
    --version) need_value "$@"; VERSION=$2; shift 2 ;;
    --project) need_value "$@"; PROJECT=$2; shift 2 ;;
    --no-create) NO_CREATE=1; shift ;;
    --delete-after) DELETE_AFTER=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    *) usage_error "unknown argument $1" ;;
  esac
done
require "$NAME" --name; require "$ZONE" --zone
require "$CONFIG" --config; require "$WORKDIR" --workdir

WHERE=(--zone "$ZONE" ${PROJECT:+--project "$PROJECT"})
TPU=(gcloud compute tpus tpu-vm)
# The repo without its .venv, runs and git history (gigabytes), as one archive.
ARCHIVE=${TMPDIR:-/tmp}/sorax-$NAME.tar.gz
EXCLUDES=(--exclude=./.git --exclude=./.venv --exclude=./runs --exclude=./demo_out
          --exclude=./.whl --exclude=./build --exclude=./.pytest_cache --exclude=./.hypothesis
          --exclude='*.egg-info' --exclude=__pycache__)
# Python >= 3.11 (the TPU images have 3.10): uv brings one into ~/sorax/.venv.
INSTALL="mkdir -p ~/sorax && tar -xzf ~/sorax.tar.gz -C ~/sorax && cd ~/sorax \
&& python3 -m pip install -q --user uv \
&& { [ -x .venv/bin/python ] || python3 -m uv venv -q --python 3.11 .venv; } \
&& python3 -m uv pip install -q --python .venv/bin/python -e \".[tpu]\""
TRAIN="cd ~/sorax && .venv/bin/$(q sorax train --config "$CONFIG" --workdir "$WORKDIR" \
  ${OVERRIDES[@]+"${OVERRIDES[@]}"})"

if ((!NO_CREATE)); then
  run "${TPU[@]}" create "$NAME" "${WHERE[@]}" \
    --accelerator-type "$ACCELERATOR_TYPE" --version "$VERSION"
fi
if ((DELETE_AFTER)); then
  trap 'run "${TPU[@]}" delete "$NAME" "${WHERE[@]}" --quiet' EXIT
fi
run tar -czf "$ARCHIVE" "${EXCLUDES[@]}" -C "$ROOT" .
run "${TPU[@]}" scp "$ARCHIVE" "$NAME:sorax.tar.gz" "${WHERE[@]}" --worker=all
run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command "$INSTALL"
run "${TPU[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command "$TRAIN"
