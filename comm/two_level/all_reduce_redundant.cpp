// Small all-reduce over two levels in two steps on uniform hosts. Every rank of a host holds
// the host's sum after the in-host all-reduce, so each rail (local index l < the fewest ranks
// on a host, at most EPCOMM_TWO_LEVEL_RAILS) all-reduces the same host sums: every rail
// computes the same bits (the same inputs, the same algorithm), and no step follows where
// every local rank is on such a rail. Otherwise (uneven hosts, fewer rails) the other ranks
// take local rank 0's result in a third step. avg: sums, divided once at the end.
#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {

void allReduceRedundant(const Levels& lv, Steps& steps, Scratch& scratch, const void* send,
                        void* recv, std::size_t count, int dtype, int op) {
  const auto type = static_cast<DataType>(dtype);
  const int stepOp = stepOpOf(op);
  const std::size_t n = steps.ok() ? count : 0;
  unsigned char* sums = scratch.get(0, n * dtypeSize(type));
  // The user's buffers are written only once every step passed (a problem found on the
  // rails leaves them untouched).
  steps.run(Level::kInHost, [&] { lv.inHost->allReduce(send, sums, n, dtype, stepOp); });
  // The rail ranks all-reduce the host sums across hosts; the others, if any, take local
  // rank 0's result.
  if (lv.onRail()) {
    steps.run(Level::kRail, [&] { lv.rail->allReduce(sums, sums, n, dtype, stepOp); });
  }
  if (!lv.allOnRails()) {
    steps.run(Level::kInHost, [&] { lv.inHost->broadcast(sums, sums, n, dtype, 0); });
  }
  steps.finish();
  finishOp(lv, op, sums, recv, n, type);
}

}  // namespace epcomm::two_level
