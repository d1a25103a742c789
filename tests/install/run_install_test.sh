#!/usr/bin/env bash
# Installs the build tree into a scratch prefix, then builds and runs, against that install
# only: C programs on the comm and EP C APIs (pkg-config epcomm, epcomm-ep), a CMake project
# (find_package(epcomm)), and the example out-of-tree backend plugin (loaded through
# EPCOMM_PLUGIN_PATH).
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d /tmp/epcomm-install-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >/dev/null
pcdir=$(dirname "$(find "$prefix" -name epcomm.pc | head -1)")
test -f "$prefix/include/epcomm/comm/epcomm.h"
test -f "$prefix/include/epcomm/comm/communicator.h"
ls "$prefix"/lib*/epcomm/libepcomm-backend-mpi.so >/dev/null

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun_cmd=(mpirun --oversubscribe --bind-to none -np 2)

# C with pkg-config.
export PKG_CONFIG_PATH=$pcdir
# shellcheck disable=SC2046
cc -o "$work/c_consumer" "$source/tests/install/consumer.c" $(pkg-config --cflags --libs epcomm)
"${mpirun_cmd[@]}" "$work/c_consumer"

# C with pkg-config epcomm-ep: the EP C API header compiles as strict C11 and links -lepcomm_ep.
test -f "$prefix/include/epcomm/ep/epcomm_ep.h"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -pedantic -Werror -o "$work/ep_c_consumer" \
  "$source/tests/install/ep_consumer.c" $(pkg-config --cflags --libs epcomm-ep)
pkg-config --libs epcomm-ep | grep -q -- -lepcomm_ep
"${mpirun_cmd[@]}" "$work/ep_c_consumer"

# One include root: no installed header is reached except through <prefix>/include/epcomm.
if pkg-config --cflags epcomm epcomm-ep | grep -q -- "include/epcomm"; then
  echo "install test: pkg-config adds <prefix>/include/epcomm to the include path" >&2
  exit 1
fi

# C++ with find_package(epcomm), at C++17 and C++20, with the consumer's own comm/config.h.
for std in 17 20; do
  cmake -S "$source/tests/install/cmake_consumer" -B "$work/cmake_consumer$std" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCONSUMER_CXX_STANDARD=$std >/dev/null
  cmake --build "$work/cmake_consumer$std" >/dev/null
  "${mpirun_cmd[@]}" "$work/cmake_consumer$std/cmake_consumer"
done
ln -s "$work/cmake_consumer17" "$work/cmake_consumer"
# C++17 with pkg-config, the consumer's own comm/config.h first on the path.
# shellcheck disable=SC2046
c++ -std=c++17 -Wall -Wextra -Werror -I"$source/tests/install/cmake_consumer/own" \
  -o "$work/pc_consumer" "$source/tests/install/cmake_consumer/main.cpp" \
  $(pkg-config --cflags --libs epcomm-ep)
"${mpirun_cmd[@]}" "$work/pc_consumer"

# The example backend built out of tree, as a third party would, then loaded by name.
cmake -S "$source/examples/loopback_backend" -B "$work/loopback" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/loopback" >/dev/null
EPCOMM_BACKEND=loopback EPCOMM_PLUGIN_PATH="$work/loopback" "$work/cmake_consumer/cmake_consumer" |
  tee "$work/loopback.out"
grep -q "on loopback ok" "$work/loopback.out"
# ... and it passes the backend conformance suite, if the build tree has it.
if [[ -x "$build/tests/conformance_test" ]]; then
  EPCOMM_BACKEND=loopback EPCOMM_PLUGIN_PATH="$work/loopback" "$build/tests/conformance_test" \
    --gtest_brief=1
fi
echo "install test: ok"
