// This process's worker threads (EPCOMM_THREADS): the large copies and reductions of the shm
// backend and the row loops of ep:: (normal dispatch's row copies and int8 quantisation,
// combine's sums, low-latency combine's sums and pull receive) are split over them, on a
// oneTBB arena whose threads stay on the cpus this process had when a communicator last came
// up (its binding, after EPCOMM_CPU_AFFINITY). Process-wide, as torch.set_num_threads: every
// communicator of the process shares the count and the arena. Each part of a loop is a
// disjoint range (of bytes, elements or rows) computed by the same code as on one thread, so
// results are bitwise equal whatever the count; small loops run on the calling thread alone.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "export.h"

namespace epcomm {

// Threads a parallel loop may use now (>= 1): setThreads()'s count, else EPCOMM_THREADS,
// else the default: OMP_NUM_THREADS (its first entry) where set, else the cpus this process owns
// (its affinity mask, divided among the host's ranks when every rank was given the whole machine),
// at most kMaxDefaultThreads.
EPCOMM_API int threads();

// The engine's count (e.g. torch.get_num_threads()), which wins over EPCOMM_THREADS: n >= 1
// fixes it, 0 returns to EPCOMM_THREADS / the default. Call it between calls, not during one.
// Throws epcomm::Error (kInvalidArgument) for n < 0 or n > kMaxThreads.
EPCOMM_API void setThreads(int n);

inline constexpr int kMaxThreads = 1024;
inline constexpr int kMaxDefaultThreads = 8;
// A part of a parallel loop covers at least this many bytes: below it a thread's start costs
// more than its share of the work saves.
inline constexpr std::size_t kMinPartBytes = 64 << 10;
// Whether a loop of n units of unitBytes is worth splitting (room for two parts); a smaller
// one runs on the calling thread alone, without touching the pool.
inline constexpr bool worthSplitting(std::size_t n, std::size_t unitBytes) {
  return n * (unitBytes > 0 ? unitBytes : 1) >= 2 * kMinPartBytes;
}

// Runs body(arg, lo, hi) over disjoint parts [lo, hi) that cover [0, n): at most threads()
// parts, each of at least kMinPartBytes (unitBytes per unit) where n allows, every
// boundary but n a multiple of `align` units. A loop that is not worthSplitting is one part
// on the calling thread; otherwise the calling thread and the pool's run the parts
// concurrently, so a part must write only what its range owns. An exception thrown by a
// part is rethrown here after every part ended.
EPCOMM_API void parallelFor(std::size_t n, std::size_t unitBytes, std::size_t align,
                            void (*body)(void* arg, std::size_t lo, std::size_t hi), void* arg);

// parallelFor with a callable f(lo, hi).
template <typename F>
void parallelFor(std::size_t n, std::size_t unitBytes, std::size_t align, F&& f) {
  using Fn = std::remove_reference_t<F>;
  parallelFor(
      n, unitBytes, align,
      [](void* a, std::size_t lo, std::size_t hi) { (*static_cast<Fn*>(a))(lo, hi); },
      const_cast<void*>(static_cast<const void*>(&f)));
}

}  // namespace epcomm
