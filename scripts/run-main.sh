#!/usr/bin/env bash
# Sets everything up on a fresh machine, builds, and runs the main job on this host: ep-bench
# under mpirun in auto mode (a prefill batch through normal dispatch/combine, a decode batch
# through low-latency mode), DeepSeek-V3 shapes (hidden 7168, top-8 of 256 experts), every
# output checked with DeepEP's oracles, beside a plain MPI_Alltoall(v) implementation.
# 1024 prefill tokens (not DeepEP's 4096) keep it within a minute on a 2-core machine; pass
# --tokens 4096 for the full shape.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
build=${BUILD_DIR:-$root/build}
np=${NP:-2}
export EPCOMM_BACKEND=${EPCOMM_BACKEND:-shm}
mpirun -np "$np" --oversubscribe --bind-to none "$build/bench/ep-bench" --mode auto --tokens 1024 \
  --check --compare mpi -n 5 -w 5 --json "$build/ep-bench.json" "$@"
echo "results: $build/ep-bench.json"
