// Large all-reduce over two levels: reduce-scatter in host, all-reduce across hosts among
// the ranks with the same local index (every local rank drives the network at once, on its
// own share), all-gather in host. The in-host step is a reduce-scatter where the shares are
// its blocks (uniform hosts, count a multiple of the ranks per host), else an all-reduce of
// which each rank of a full rail takes its share. Bitwise equal on every rank: each share
// is reduced once, by one rail, and copied to the others. avg: sums, divided per share.
#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {

void allReduceShares(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                     std::size_t count, int dtype, int op) {
  const auto type = static_cast<DataType>(dtype);
  const std::size_t es = dtypeSize(type);
  const int stepOp = stepOpOf(op);
  const std::size_t n = steps.ok() ? count : 0;
  const int localSize = lv.localSize();
  const int parts = lv.rails;
  const bool blocks = lv.allOnRails() && n % static_cast<std::size_t>(localSize) == 0;

  Share mine;
  unsigned char* share = nullptr;
  if (blocks) {
    mine = Share{n / localSize * lv.local, n / localSize};
    share = scratch.get(0, mine.count * es);
    steps.run(Level::kInHost,
              [&] { lv.inHost->reduceScatter(send, share, mine.count, dtype, stepOp); });
  } else {
    mine = shareOf(n, parts, lv.local);
    unsigned char* sums = scratch.get(0, n * es);
    steps.run(Level::kInHost, [&] { lv.inHost->allReduce(send, sums, n, dtype, stepOp); });
    share = sums + mine.first * es;
  }
  if (lv.onRail()) {
    steps.run(Level::kRail, [&] { lv.rail->allReduce(share, share, mine.count, dtype, stepOp); });
  }
  if (steps.ok()) finishOp(lv, op, share, share, mine.count, type);
  // Each local rank's share, where it lies in recv.
  auto* counts = reinterpret_cast<std::size_t*>(
      scratch.get(1, 2 * static_cast<std::size_t>(localSize) * sizeof(std::size_t)));
  std::size_t* displs = counts + localSize;
  for (int l = 0; l < localSize; ++l) {
    const Share s = blocks ? Share{n / localSize * l, n / localSize} : shareOf(n, parts, l);
    counts[l] = s.count;
    displs[l] = s.first;
  }
  steps.run(Level::kInHost,
            [&] { lv.inHost->allGatherV(share, mine.count, recv, counts, displs, dtype); });
  steps.finish();
}

}  // namespace epcomm::two_level
