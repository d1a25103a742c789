// The collective algorithms of the shm backend, one per file. Each runs whole steps of one
// Channel, so all ranks take the same number of steps for the same (validated) arguments.
// Chunk arithmetic lives in plan.h; these functions do the copying.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

#include "backends/shm/channel.h"
#include "backends/shm/parallel.h"
#include "comm/kernels/copy.h"
#include "comm/types.h"

namespace epcomm::shm {

// memcpy that accepts null pointers when there is nothing to copy; large copies are split
// over the worker threads (parallel.h), each part copied in pieces (comm/kernels/copy.h).
inline void copyBytes(void* dst, const void* src, std::size_t n) {
  forParts(n, 1, kLine, [&](std::size_t lo, std::size_t hi) {
    kernels::copyInPieces(static_cast<char*>(dst) + lo, static_cast<const char*>(src) + lo,
                          hi - lo);
  });
}

// The per-rank source pointers of a reduction: on the stack up to 16 ranks, no allocation.
class Sources {
 public:
  explicit Sources(int n) : p_(local_) {
    if (n > kLocal) p_ = (heap_ = std::make_unique<const void*[]>(n)).get();
  }
  const void** data() { return p_; }
  const void*& operator[](int i) { return p_[i]; }

 private:
  static constexpr int kLocal = 16;
  const void* local_[kLocal];
  std::unique_ptr<const void*[]> heap_;
  const void** p_;
};

struct Step {
  Channel& channel;
  const OpClock& clock;
  int rank;
  int size;
};

// auto's default thresholds (all_reduce_algorithms.h; EPCOMM_SHM_ONESHOT_MAX_BYTES moves
// them). Messages up to kOneShotMaxBytes use the one-shot all-reduce (every rank reduces the
// whole message from every slot: one step); larger ones reduce-scatter + all-gather
// (two-shot), which reduces a 1/P share but takes two steps. When ranks outnumber the cores
// a step costs a context switch, so one-shot keeps going much longer. The measurements
// behind both numbers: docs/performance.md, "Fourth pass".
inline constexpr std::size_t kOneShotMaxBytes = 4 << 10;
inline constexpr std::size_t kOneShotMaxBytesOversubscribed = 256 << 10;

// Line mode (all_reduce_lines.cpp) stages every rank's message on the stack: this bounds
// size * bytes. Above 1 KiB the one-shot copy path is faster (docs/performance.md): a line
// carries 56 bytes and its own flag, each copied and checked apart, while the copy path
// reduces straight out of the peers' slots after its step line.
inline constexpr std::size_t kLinesStageBytes = 16 << 10;
inline constexpr std::size_t kLinesMaxBytes = 1024;
static_assert(Channel::linesFor(kLinesMaxBytes) * kLine <= Channel::kLineRegionBytes);
inline bool fitsLines(std::size_t bytes, int size) {
  return size > 1 && bytes <= kLinesMaxBytes &&
         bytes * static_cast<std::size_t>(size) <= kLinesStageBytes;
}

// Messages that fitsLines(): data and arrival flag share each cache line.
void allReduceLines(const Step& s, const void* send, void* recv, std::size_t count, DataType dtype,
                    ReduceOp op);
// One-shot: every rank reduces the whole message from every slot.
void allReduceOneShot(const Step& s, const void* send, void* recv, std::size_t count,
                      DataType dtype, ReduceOp op);
void allReduceTwoShot(const Step& s, const void* send, void* recv, std::size_t count,
                      DataType dtype, ReduceOp op);
void reduceScatter(const Step& s, const void* send, void* recv, std::size_t recvCount,
                   DataType dtype, ReduceOp op);
void allGather(const Step& s, const void* send, void* recv, std::size_t sendBytes);
void allGatherV(const Step& s, const void* send, void* recv, const std::size_t* recvCounts,
                const std::size_t* recvDispls, std::size_t elemBytes);
void broadcast(const Step& s, const void* send, void* recv, std::size_t bytes, int root);
void barrier(const Step& s);
void allToAll(const Step& s, const void* send, void* recv, std::size_t blockBytes);
void allToAllV(const Step& s, const void* send, const std::size_t* sendCounts,
               const std::size_t* sendDispls, void* recv, const std::size_t* recvCounts,
               const std::size_t* recvDispls, std::size_t elemBytes);

}  // namespace epcomm::shm
