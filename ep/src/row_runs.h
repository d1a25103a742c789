// Row copies gathered into runs (rows contiguous at both ends) and copied a run at a time,
// split over the worker threads (comm/workers.h) when large: the per-token row loops of
// dispatch then move most bytes in a few large parallel copies. Parts are disjoint byte
// ranges, so the result is the same bytes whatever the thread count.
#pragma once

#include <cstddef>
#include <cstring>

#include "comm/workers.h"

namespace epcomm::ep {

// memcpy split over the worker threads (64-byte aligned parts).
inline void copyInParallel(void* dst, const void* src, std::size_t bytes) {
  parallelFor(bytes, 1, 64, [&](std::size_t lo, std::size_t hi) {
    std::memcpy(static_cast<std::byte*>(dst) + lo, static_cast<const std::byte*>(src) + lo,
                hi - lo);
  });
}

class RowRuns {
 public:
  explicit RowRuns(std::size_t rowBytes = 0) : rowBytes_(rowBytes) {}
  // Copies one row, deferred: src must stay unchanged and dst unread until flush().
  void add(void* dst, const void* src) {
    auto* d = static_cast<std::byte*>(dst);
    const auto* s = static_cast<const std::byte*>(src);
    if (count_ > 0 && d == dst_ + count_ * rowBytes_ && s == src_ + count_ * rowBytes_) {
      ++count_;
      return;
    }
    flush();
    dst_ = d;
    src_ = s;
    count_ = 1;
  }
  void flush() {
    if (count_ > 0) copyInParallel(dst_, src_, count_ * rowBytes_);
    count_ = 0;
  }

 private:
  std::size_t rowBytes_;
  std::byte* dst_ = nullptr;
  const std::byte* src_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace epcomm::ep
