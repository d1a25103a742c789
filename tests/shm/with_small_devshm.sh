#!/usr/bin/env bash
# Runs a command with a private /dev/shm of SIZE (e.g. 8m) in a new mount namespace (root):
#   unshare --mount with_small_devshm.sh 8m cmd args...
# Nothing outlives the namespace: the tmpfs goes when its last process ends.
set -euo pipefail
size=$1
shift
mount --make-rprivate / 2>/dev/null || true
mount -t tmpfs -o "size=$size,mode=1777" tmpfs /dev/shm
exec "$@"
