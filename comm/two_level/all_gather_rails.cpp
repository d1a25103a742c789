// All-gather over two levels (uniform hosts): each rail all-gathers its members' blocks (a
// block crosses to each other host once), then each host all-gathers its rails' results
// and puts the blocks in rank order. With the call check armed an in-host barrier comes
// first, so the steps have the shape every armed call has (levels.h).
#include <cstring>

#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {

void allGatherRails(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                    std::size_t sendCount, int dtype) {
  const std::size_t es = dtypeSize(static_cast<DataType>(dtype));
  const std::size_t c = steps.ok() ? sendCount : 0;
  const int hosts = lv.numHosts();
  const int localSize = lv.localSize();
  const std::size_t railCount = c * static_cast<std::size_t>(hosts);
  unsigned char* railBlocks = scratch.get(0, railCount * es);
  unsigned char* hostBlocks = scratch.get(1, railCount * static_cast<std::size_t>(localSize) * es);
  if (steps.armed()) steps.run(Level::kInHost, [&] { lv.inHost->barrier(); });
  steps.run(Level::kRail, [&] { lv.rail->allGather(send, railBlocks, c, dtype); });
  steps.run(Level::kInHost,
            [&] { lv.inHost->allGather(railBlocks, hostBlocks, railCount, dtype); });
  steps.finish();
  // hostBlocks holds, for each local index l, rail l's blocks in host order.
  const std::size_t blockBytes = c * es;
  if (blockBytes == 0) return;
  for (int l = 0; l < localSize; ++l) {
    for (int h = 0; h < hosts; ++h) {
      const auto rank = static_cast<std::size_t>(lv.layout.members(h)[static_cast<std::size_t>(l)]);
      const std::size_t from = static_cast<std::size_t>(l * hosts + h) * blockBytes;
      std::memcpy(static_cast<unsigned char*>(recv) + rank * blockBytes, hostBlocks + from,
                  blockBytes);
    }
  }
}

}  // namespace epcomm::two_level
