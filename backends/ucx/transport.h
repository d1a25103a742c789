// What the ucx backend's algorithms (one per file, algorithms.h) see of the network: the
// ranks of one communicator and messages between them. Rank arithmetic lives in the
// algorithms, UCX in the implementation (backend.cpp); a test drives the same algorithms over
// threads (tests/unit/ucx_algorithms_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "comm/kernels/isa.h"
#include "comm/kernels/reduce.h"
#include "comm/types.h"

namespace epcomm::ucx {

// One collective call's messages. Message `step` from rank a to rank b matches the receive
// b posts for step `step` from a; messages with equal (peer, step) match in posting order,
// so an algorithm may reuse steps as long as both sides post in the same order. A receive
// must name the exact byte count the peer sends (a mismatch fails the call).
class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Post a send / receive; the returned index names it in wait(). Buffers stay in use until
  // the op was waited for.
  virtual std::size_t postSend(int peer, std::uint32_t step, const void* buf,
                               std::size_t bytes) = 0;
  virtual std::size_t postRecv(int peer, std::uint32_t step, void* buf, std::size_t bytes) = 0;
  // Wait for one op, or for every op posted since the last waitAll (indices restart at 0).
  virtual void wait(std::size_t index) = 0;
  virtual void waitAll() = 0;
  // Scratch memory of at least `bytes`, valid until the collective returns; slots 0 and 1
  // are distinct.
  virtual void* scratch(std::size_t bytes, int slot) = 0;

  // Send to `to` and receive from `from` (step `step`), both complete on return.
  void sendRecv(int to, const void* sendBuf, std::size_t sendBytes, int from, void* recvBuf,
                std::size_t recvBytes, std::uint32_t step) {
    postRecv(from, step, recvBuf, recvBytes);
    postSend(to, step, sendBuf, sendBytes);
    waitAll();
  }
};

// How an all-reduce or reduce-scatter combines: kernels::reduce, with avg summed on the way
// and divided once at the end (finish), so every rank's bits agree.
struct Reduction {
  DataType dtype;
  ReduceOp op;
  kernels::Isa isa;

  std::size_t elementSize() const { return dtypeSize(dtype); }
  // dst = first op second (in that order; dst may be either).
  void combine(void* dst, const void* first, const void* second, std::size_t count) const {
    const void* srcs[2] = {first, second};
    kernels::reduce(isa, dst, srcs, 2, count, dtype, op == ReduceOp::kAvg ? ReduceOp::kSum : op, 1);
  }
  // avg: dst /= size. Other ops: nothing.
  void finish(void* dst, std::size_t count, int size) const {
    if (op != ReduceOp::kAvg || count == 0) return;
    const void* srcs[1] = {dst};
    kernels::reduce(isa, dst, srcs, 1, count, dtype, ReduceOp::kAvg, size);
  }
};

}  // namespace epcomm::ucx
