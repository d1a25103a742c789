// The collective algorithms of the shm backend, one per file. Each runs whole steps of one
// Channel, so all ranks take the same number of steps for the same (validated) arguments.
// Chunk arithmetic lives in plan.h; these functions do the copying.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>

#include "backends/shm/channel.h"
#include "comm/types.h"

namespace epcomm::shm {

// memcpy that accepts null pointers when there is nothing to copy.
inline void copyBytes(void* dst, const void* src, std::size_t n) {
  if (n) std::memcpy(dst, src, n);
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

// auto's default thresholds (all_reduce_algorithms.h; knobs move them). Messages up to
// kOneShotMaxBytes use the one-shot all-reduce (every rank reduces the whole
// message from every slot); larger ones reduce-scatter + all-gather (two-shot), which reduces
// a 1/P share and copies whole lines but takes two steps. 2 ranks on 2 cores, alternated:
// two-shot equal at 8 KiB, faster above (16 KiB 3.0 vs 3.4 us, 64 KiB 6.7-7.1 vs 10-12.7,
// 256 KiB 21-27 vs 30), slower at 4 KiB (2.1 vs 1.5). When ranks outnumber the cores a step
// costs a context switch: 4 ranks on 2 cores, two-shot 42 vs 27 us at 16 KiB, 51 vs 43 at
// 64 KiB; one-shot keeps going to 256 KiB there.
inline constexpr std::size_t kOneShotMaxBytes = 4 << 10;
inline constexpr std::size_t kOneShotMaxBytesOversubscribed = 256 << 10;

// Line mode (all_reduce_lines.cpp) stages every rank's message on the stack: this bounds
// size * bytes. Above 1 KiB the
// one-shot copy path is faster (2 ranks, slow VM state, alternated: 2 KiB 0.96-1.05 vs
// 1.21-1.46 us in lines, 4 KiB 1.44-1.57 vs 1.99-2.50; 1 KiB 0.58-0.73 in lines vs
// 0.72-0.89, 640 B 0.47-0.57 vs 0.61-0.67): a line carries 56 bytes and its own flag, each
// copied and checked apart, while the copy path reduces straight out of the peers' slots
// after its step line (one transfer after another).
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
