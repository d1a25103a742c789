// All-to-all(v) over two levels: the blocks between ranks of one host go through the in-host
// backend (shared memory), then the blocks between hosts over the network backend, where
// the same-host blocks count zero. Each step touches only its peers' blocks, so in place
// (send == recv, equal counts and displacements) stays in place. The call check, when
// armed, settled before (over the levels, in the shape every armed call has); the steps run
// unchecked on arguments this rank checked.
#include <vector>

#include "comm/two_level/algorithms.h"

namespace epcomm::two_level {

void allToAllVSplit(const Levels& lv, Steps& steps, const void* send, const std::size_t* sendCounts,
                    const std::size_t* sendDispls, void* recv, const std::size_t* recvCounts,
                    const std::size_t* recvDispls, int dtype) {
  const std::vector<int>& mates = lv.layout.members(lv.host);
  const std::size_t n = mates.size();
  const auto size = static_cast<std::size_t>(lv.size);
  // In host, by local index: [send counts | send displs | recv counts | recv displs].
  std::vector<std::size_t> local(4 * n);
  std::vector<std::size_t> remoteSend(sendCounts, sendCounts + size);
  std::vector<std::size_t> remoteRecv(recvCounts, recvCounts + size);
  for (std::size_t l = 0; l < n; ++l) {
    const auto r = static_cast<std::size_t>(mates[l]);
    local[l] = sendCounts[r];
    local[n + l] = sendDispls[r];
    local[2 * n + l] = recvCounts[r];
    local[3 * n + l] = recvDispls[r];
    remoteSend[r] = 0;
    remoteRecv[r] = 0;
  }
  steps.run(Level::kInHost, [&] {
    lv.inHost->allToAllV(send, local.data(), local.data() + n, recv, local.data() + 2 * n,
                         local.data() + 3 * n, dtype);
  });
  steps.run(Level::kWorld, [&] {
    lv.world->allToAllV(send, remoteSend.data(), sendDispls, recv, remoteRecv.data(), recvDispls,
                        dtype);
  });
}

}  // namespace epcomm::two_level
