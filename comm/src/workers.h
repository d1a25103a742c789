// The worker pool behind comm/workers.h: how a loop is cut into parts (a pure function, for
// the tests), the default count, and the C entry handed to backends (comm/backend.h:
// parallelFor).
#pragma once

#include <cstddef>
#include <cstdint>

#include "comm/config.h"
#include "comm/export.h"

namespace epcomm {

// Parts of a loop of n units: `count` parts of `size` units (the last one shorter), size a
// multiple of align; count <= threads, and 1 when n * unitBytes < 2 * kMinPartBytes.
struct Parts {
  std::size_t count = 0;
  std::size_t size = 0;
};
EPCOMM_API Parts planParts(std::size_t n, std::size_t unitBytes, std::size_t align, int threads);

// The default count (EPCOMM_THREADS unset or 0): `ownedCpus` (the process's affinity mask
// size), divided by `localSize` when the mask holds every one of the machine's `onlineCpus`
// (no one bound the ranks, so they share the machine), at least 1, at most
// kMaxDefaultThreads.
EPCOMM_API int defaultThreads(int ownedCpus, int onlineCpus, int localSize);

// Called as each communicator comes up (after its binding): takes EPCOMM_THREADS from its
// config, and settles the default on the first call of the process.
void configureThreads(const Config& config, int localSize);

// How many parallel loops of this process were split over more than one thread (the tests
// check that thread counts above 1 are used).
EPCOMM_API std::uint64_t splitLoops();

// comm/backend.h's parallelFor entry: 0, or 1 when a part threw (the error is logged).
extern "C" int epcommBackendParallelFor(std::size_t n, std::size_t unitBytes, std::size_t align,
                                        void (*body)(void* arg, std::size_t lo, std::size_t hi),
                                        void* arg);

}  // namespace epcomm
