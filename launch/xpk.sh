#!/usr/bin/env bash
# Train on TPU slices of a GKE cluster through xpk (pip install xpk): submits one workload that
# runs `sorax train` in DOCKER_IMAGE on every host of every slice. The image must have sorax
# installed with JAX for TPU (pip install -e ".[tpu]") and this repo as its working directory,
# so that --config experiments/... resolves. A container's disk goes when it ends: keep the
# workdir on persistent storage.
#
# Usage:
#   launch/xpk.sh --cluster CLUSTER --workload NAME --tpu-type TYPE --docker-image IMAGE \
#     --config CONFIG --workdir DIR [options] [-- OVERRIDES...]
#
#   --cluster CLUSTER       xpk/GKE cluster (required)
#   --workload NAME         workload name: lowercase letters, digits, dashes (required)
#   --tpu-type TYPE         e.g. v5litepod-16, v5p-128 (required)
#   --docker-image IMAGE    e.g. gcr.io/PROJECT/sorax:latest (required)
#   --config CONFIG         experiments/FILE.py[:arg] (required)
#   --workdir DIR           run folder, as sorax train in the container sees it (required)
#   --num-slices N          default 1
#   --project PROJECT       default: gcloud's configured project
#   --zone ZONE             default: gcloud's configured compute/zone
#   --dry-run               print the command and run nothing
#   -h, --help              this message
#   -- OVERRIDES...         --config.key=value arguments for `sorax train`
#                           (a --config.key=value before `--` is passed through too)
#
# Example:
#   launch/xpk.sh --dry-run --cluster my-cluster --workload sorax-base --tpu-type v5litepod-16 \
#     --docker-image gcr.io/my-project/sorax:latest --config experiments/world.py:base \
#     --workdir /data/runs/base -- --config.mesh.shape.fsdp=4
set -euo pipefail
SCRIPT=${BASH_SOURCE[0]}
source "$(dirname "$SCRIPT")/common.sh"

CLUSTER= WORKLOAD= TPU_TYPE= DOCKER_IMAGE= CONFIG= WORKDIR= PROJECT= ZONE= NUM_SLICES=1
while (($#)); do
  case $1 in
    --config.*) OVERRIDES+=("$1"); shift ;;
    --*=*) set -- "${1%%=*}" "${1#*=}" "${@:2}" ;;
    --cluster) need_value "$@"; CLUSTER=$2; shift 2 ;;
    --workload) need_value "$@"; WORKLOAD=$2; shift 2 ;;
    --tpu-type) need_value "$@"; TPU_TYPE=$2; shift 2 ;;
    --docker-image) need_value "$@"; DOCKER_IMAGE=$2; shift 2 ;;
    --config) need_value "$@"; CONFIG=$2; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR=$2; shift 2 ;;
    --num-slices) need_value "$@"; NUM_SLICES=$2; shift 2 ;;
    --project) need_value "$@"; PROJECT=$2; shift 2 ;;
    --zone) need_value "$@"; ZONE=$2; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; OVERRIDES+=("$@"); break ;;
    *) usage_error "unknown argument $1" ;;
  esac
done
require "$CLUSTER" --cluster; require "$WORKLOAD" --workload; require "$TPU_TYPE" --tpu-type
require "$DOCKER_IMAGE" --docker-image; require "$CONFIG" --config; require "$WORKDIR" --workdir
[[ $NUM_SLICES =~ ^[1-9][0-9]*$ ]] || usage_error "--num-slices must be >= 1, not $NUM_SLICES"

TRAIN=$(q sorax train --config "$CONFIG" --workdir "$WORKDIR" ${OVERRIDES[@]+"${OVERRIDES[@]}"})
run xpk workload create --cluster "$CLUSTER" --workload "$WORKLOAD" --tpu-type "$TPU_TYPE" \
  --num-slices "$NUM_SLICES" --docker-image "$DOCKER_IMAGE" \
  ${PROJECT:+--project "$PROJECT"} ${ZONE:+--zone "$ZONE"} --command "$TRAIN"
