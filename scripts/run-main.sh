#!/usr/bin/env bash
# Sets everything up on a fresh machine, builds, and runs the main job on this host: a
# checked all-reduce sweep with coll-bench under mpirun, epcomm beside MPI_Allreduce.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
build=${BUILD_DIR:-$root/build}
np=${NP:-2}
mpirun -np "$np" --oversubscribe "$build/bench/coll-bench" -b 8 -e 1M -f 8 -o allreduce -d f32 \
  -c 1 --compare mpi --json "$build/coll-bench.json" "$@"
echo "results: $build/coll-bench.json"
