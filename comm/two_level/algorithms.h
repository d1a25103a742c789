// The two-level algorithms, one per file. Each is collective over the communicator, takes
// the arguments as comm/backend.h defines them (already checked on this rank), runs its
// steps through `steps` (levels.h: the call check rides on them) and throws what a step
// raised. Rank arithmetic and level calls only: no transport code.
#pragma once

#include <cstddef>
#include <cstring>

#include "comm/kernels/isa.h"
#include "comm/kernels/reduce.h"
#include "comm/two_level/levels.h"
#include "comm/types.h"

namespace epcomm::two_level {

// Small all-reduce: in-host all-reduce, then every rank of a full rail all-reduces the
// host sums with its rail (uneven hosts: then an in-host broadcast).
void allReduceRedundant(const Levels& lv, Steps& steps, Scratch& scratch, const void* send,
                        void* recv, std::size_t count, int dtype, int op);
// Large all-reduce: in-host reduce-scatter (or all-reduce), each rank of a full rail
// all-reduces its share with its rail, in-host all-gather of the shares.
void allReduceShares(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                     std::size_t count, int dtype, int op);
// Uniform hosts: rail all-gather, then in-host all-gather of the rails' blocks.
void allGatherRails(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                    std::size_t sendCount, int dtype);
// Uniform hosts: in-host reduce-scatter of the blocks each rail needs, then rail
// reduce-scatter.
void reduceScatterRails(const Levels& lv, Steps& steps, Scratch& scratch, const void* send,
                        void* recv, std::size_t recvCount, int dtype, int op);
// In-host broadcast on the root's host, rail broadcast of one share per rank of a full
// rail, in-host all-gather of the shares on the other hosts.
void broadcastShares(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                     std::size_t count, int dtype, int root);
// The blocks between ranks of one host in host, the others over the network backend
// (any hosts; the check, when armed, settled before).
void allToAllVSplit(const Levels& lv, Steps& steps, const void* send, const std::size_t* sendCounts,
                    const std::size_t* sendDispls, void* recv, const std::size_t* recvCounts,
                    const std::size_t* recvDispls, int dtype);
// In host, then the full rails, then (uneven hosts) in host again.
void barrierLevels(const Levels& lv, Steps& steps);

// The op each step of a reduction runs: avg as sum, divided once at the end (finishOp).
inline int stepOpOf(int op) {
  return static_cast<ReduceOp>(op) == ReduceOp::kAvg ? static_cast<int>(ReduceOp::kSum) : op;
}
// The last touch of a reduction's n elements: dst = src / the communicator's size for avg,
// else a copy (nothing where dst == src).
inline void finishOp(const Levels& lv, int op, const void* src, void* dst, std::size_t n,
                     DataType type) {
  if (static_cast<ReduceOp>(op) == ReduceOp::kAvg) {
    kernels::reduce(kernels::detectedIsa(), dst, &src, 1, n, type, ReduceOp::kAvg, lv.size);
  } else if (dst != src && n > 0) {
    std::memcpy(dst, src, n * dtypeSize(type));
  }
}

// The share of `count` elements local rank l of `parts` takes: [first, first + count).
struct Share {
  std::size_t first = 0;
  std::size_t count = 0;
};
inline Share shareOf(std::size_t count, int parts, int l) {
  if (l >= parts) return {count, 0};
  const auto p = static_cast<std::size_t>(parts);
  const auto i = static_cast<std::size_t>(l);
  const std::size_t lo = count / p * i + (i < count % p ? i : count % p);
  return {lo, count / p + (i < count % p ? 1 : 0)};
}

}  // namespace epcomm::two_level
