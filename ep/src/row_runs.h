// Row copies gathered into runs (rows contiguous at both ends) and copied a run at a time,
// split over the worker threads (comm/workers.h) when large: the per-token row loops of
// dispatch then move most bytes in a few large parallel copies. Parts are disjoint byte
// ranges, so the result is the same bytes whatever the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "comm/kernels/copy.h"
#include "comm/workers.h"

namespace epcomm::ep {

// memcpy split over the worker threads (64-byte aligned parts), each part copied in pieces
// (comm/kernels/copy.h).
inline void copyInParallel(void* dst, const void* src, std::size_t bytes) {
  parallelFor(bytes, 1, 64, [&](std::size_t lo, std::size_t hi) {
    kernels::copyInPieces(static_cast<std::byte*>(dst) + lo,
                          static_cast<const std::byte*>(src) + lo, hi - lo);
  });
}

// A run of `count` rows of rowBytes, contiguous at both ends: from `src`, to `dst` (an
// address, or an offset in a window: anything counted in bytes).
struct RowRun {
  std::uintptr_t dst = 0;
  const std::byte* src = nullptr;
  std::size_t count = 0;
  // Takes the row (d, s) when it follows the run at both ends (or the run is empty).
  bool extend(std::uintptr_t d, const std::byte* s, std::size_t rowBytes) {
    if (count == 0) {
      *this = RowRun{d, s, 1};
      return true;
    }
    if (d != dst + count * rowBytes || s != src + count * rowBytes) return false;
    ++count;
    return true;
  }
};

// Row copies in runs; each run is copied by copyInParallel when it ends.
class RowRuns {
 public:
  explicit RowRuns(std::size_t rowBytes = 0) : rowBytes_(rowBytes) {}
  // Copies one row, deferred: src must stay unchanged and dst unread until flush().
  void add(void* dst, const void* src) {
    const auto d = reinterpret_cast<std::uintptr_t>(dst);
    const auto* s = static_cast<const std::byte*>(src);
    if (run_.extend(d, s, rowBytes_)) return;
    flush();
    run_.extend(d, s, rowBytes_);
  }
  void flush() {
    if (run_.count > 0) {
      copyInParallel(reinterpret_cast<void*>(run_.dst), run_.src, run_.count * rowBytes_);
    }
    run_ = RowRun{};
  }

 private:
  std::size_t rowBytes_;
  RowRun run_;
};

}  // namespace epcomm::ep
