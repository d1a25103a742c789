// Reduce-scatter over two levels (uniform hosts): the blocks are laid out by rail (for each
// local index l, the blocks of rail l's ranks in host order), reduce-scattered in host (local
// rank l gets its host's sums of rail l's blocks), then reduce-scattered along the rail (each
// rank gets the sum over hosts of its own block). A block's host sums cross to its rank's
// host once. avg: sums, divided at the end.
#include <cstring>

#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {

void reduceScatterRails(const Levels& lv, Steps& steps, Scratch& scratch, const void* send,
                        void* recv, std::size_t recvCount, int dtype, int op) {
  const auto type = static_cast<DataType>(dtype);
  const std::size_t es = dtypeSize(type);
  const int stepOp = stepOpOf(op);
  const std::size_t c = steps.ok() ? recvCount : 0;
  const int hosts = lv.numHosts();
  const int localSize = lv.localSize();
  const std::size_t blockBytes = c * es;
  const std::size_t railCount = c * static_cast<std::size_t>(hosts);
  unsigned char* byRail = scratch.get(0, railCount * static_cast<std::size_t>(localSize) * es);
  unsigned char* hostSums = scratch.get(1, railCount * es);
  if (blockBytes) {
    for (int l = 0; l < localSize; ++l) {
      for (int h = 0; h < hosts; ++h) {
        const auto rank =
            static_cast<std::size_t>(lv.layout.members(h)[static_cast<std::size_t>(l)]);
        std::memcpy(byRail + static_cast<std::size_t>(l * hosts + h) * blockBytes,
                    static_cast<const unsigned char*>(send) + rank * blockBytes, blockBytes);
      }
    }
  }
  steps.run(Level::kInHost,
            [&] { lv.inHost->reduceScatter(byRail, hostSums, railCount, dtype, stepOp); });
  steps.run(Level::kRail, [&] { lv.rail->reduceScatter(hostSums, recv, c, dtype, stepOp); });
  steps.finish();
  finishOp(lv, op, recv, recv, c, type);
}

}  // namespace epcomm::two_level
