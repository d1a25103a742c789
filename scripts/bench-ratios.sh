#!/usr/bin/env bash
# Runs coll-bench --compare mpi REPEATS times and prints, per size, the median time of
# epcomm and of MPI (each from the same runs) and their ratio, out of place and in place.
# A median over whole runs keeps one descheduled run on a shared machine from deciding a
# ratio. Usage:
#   scripts/bench-ratios.sh [-r REPEATS] [-n NP] [-- extra mpirun args] -- coll-bench args
# e.g.
#   scripts/bench-ratios.sh -r 5 -n 2 -- -b 8 -e 4K -f 2 -o allreduce -d f32 -n 2000 -w 200
# Environment: BUILD_DIR (default build), EPCOMM_BACKEND (default shm).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
repeats=5
np=2
mpirun_extra=()
while (($#)); do
  case $1 in
    -r) repeats=$2; shift 2 ;;
    -n) np=$2; shift 2 ;;
    --) shift; break ;;
    *) mpirun_extra+=("$1"); shift ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export EPCOMM_BACKEND=${EPCOMM_BACKEND:-shm}
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for ((i = 0; i < repeats; ++i)); do
  # Table rows: size count type redop root time algbw busbw wrong time algbw busbw wrong impl
  mpirun -np "$np" "${mpirun_extra[@]}" "$build/bench/coll-bench" "$@" --compare mpi -c 1 |
    awk '$1 ~ /^[0-9]+$/ && NF >= 14 {
           if ($9 != 0 || $13 != 0) { print "wrong results in a run" > "/dev/stderr"; exit 1 }
           print $1, ($NF == "mpi" ? "mpi" : "epcomm"), $6, $10 }' >>"$rows"
done
echo "# $(date -u +%FT%TZ) $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg), $repeats runs," \
  "np $np, EPCOMM_BACKEND=$EPCOMM_BACKEND, coll-bench $*"
echo "# medians in us; ratio = epcomm time / MPI time (algbw ratio = 1 / ratio)"
printf '%12s %12s %12s %8s   %12s %12s %8s\n' bytes epcomm mpi ratio epcomm-ip mpi-ip ratio-ip
sort -k1,1n -k2,2 "$rows" | awk '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; ++i) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; --j) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $1; sizes[key] = 1; oop[key, $2] = oop[key, $2] " " $3; ip[key, $2] = ip[key, $2] " " $4 }
  END {
    for (s in sizes) order[++m] = s + 0
    for (i = 2; i <= m; ++i) { t = order[i]; for (j = i - 1; j >= 1 && order[j] > t; --j) order[j + 1] = order[j]; order[j + 1] = t }
    for (i = 1; i <= m; ++i) {
      s = order[i]
      eo = median(oop[s, "epcomm"]); mo = median(oop[s, "mpi"])
      ei = median(ip[s, "epcomm"]); mi = median(ip[s, "mpi"])
      printf "%12d %12.2f %12.2f %8.2f   %12.2f %12.2f %8.2f\n", s, eo, mo, eo / mo, ei, mi, ei / mi
    }
  }'
