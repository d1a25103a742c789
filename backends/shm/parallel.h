// The worker threads libepcomm lends its backends (comm/backend.h: parallelFor; the pool is
// comm/workers.h's, process-wide), used by copyBytes and reduce for large messages. Each part
// is a disjoint, line-aligned range done by the same code as one thread would, so results
// do not depend on the thread count.
#pragma once

#include <atomic>
#include <cstddef>
#include <stdexcept>
#include <type_traits>

#include "comm/backend.h"
#include "comm/workers.h"

namespace epcomm::shm {

using ParallelForFn = decltype(epcommBackendCreateArgs::parallelFor);

// The lent entry, set when a backend is created (null: every loop runs on the caller).
inline std::atomic<ParallelForFn> gParallelFor{nullptr};

inline void lendParallelFor(const epcommBackendCreateArgs& args) {
  const std::size_t needed =
      offsetof(epcommBackendCreateArgs, parallelFor) + sizeof(args.parallelFor);
  if (args.structSize >= needed && args.parallelFor) gParallelFor.store(args.parallelFor);
}

// f(lo, hi) over parts of [0, n) (align units, unitBytes each); on the calling thread alone
// when no pool was lent or the loop is too small to split.
template <typename F>
void forParts(std::size_t n, std::size_t unitBytes, std::size_t align, F&& f) {
  const ParallelForFn fn = gParallelFor.load(std::memory_order_relaxed);
  if (!fn || !worthSplitting(n, unitBytes)) {
    f(std::size_t{0}, n);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  const int rc = fn(
      n, unitBytes, align,
      [](void* a, std::size_t lo, std::size_t hi) { (*static_cast<Fn*>(a))(lo, hi); },
      const_cast<void*>(static_cast<const void*>(&f)));
  if (rc != 0)
    throw std::runtime_error("shm backend: a parallel loop of the worker threads failed");
}

}  // namespace epcomm::shm
