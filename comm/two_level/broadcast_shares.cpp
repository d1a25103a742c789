// Broadcast over two levels: the root's host broadcasts in host, each of its local ranks on
// a full rail broadcasts one share along its rail (every such rank drives the network at
// once; each byte crosses to each other host once), and the other hosts all-gather the
// shares in host. With the call check armed every rank takes part in three steps (in host,
// rail, in host: a barrier where it has nothing to move), so a problem anywhere reaches
// every rank. The root's host may have received the data when a problem elsewhere fails the
// call.
#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {

void broadcastShares(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                     std::size_t count, int dtype, int root) {
  const std::size_t es = dtypeSize(static_cast<DataType>(dtype));
  const std::size_t n = steps.ok() ? count : 0;
  const bool armed = steps.armed();
  const int rootHost = lv.layout.hostOf(root);
  const int localSize = lv.localSize();
  const bool onRootHost = lv.host == rootHost;
  if (onRootHost) {
    const int rootLocal = lv.layout.localOf(root);
    steps.run(Level::kInHost, [&] { lv.inHost->broadcast(send, recv, n, dtype, rootLocal); });
  } else if (armed) {
    steps.run(Level::kInHost, [&] { lv.inHost->barrier(); });
  }
  const int parts = lv.rails;
  const Share mine = shareOf(n, parts, lv.local);
  void* share = static_cast<unsigned char*>(recv) + mine.first * es;
  // Rails 0 .. parts-1 hold every host, in host order: the root's host is rail rank rootHost.
  if (lv.onRail()) {
    steps.run(Level::kRail, [&] { lv.rail->broadcast(share, share, mine.count, dtype, rootHost); });
  }
  if (!onRootHost) {
    auto* counts = reinterpret_cast<std::size_t*>(
        scratch.get(1, 2 * static_cast<std::size_t>(localSize) * sizeof(std::size_t)));
    std::size_t* displs = counts + localSize;
    for (int l = 0; l < localSize; ++l) {
      const Share s = shareOf(n, parts, l);
      counts[l] = s.count;
      displs[l] = s.first;
    }
    steps.run(Level::kInHost,
              [&] { lv.inHost->allGatherV(share, mine.count, recv, counts, displs, dtype); });
  } else if (armed) {
    steps.run(Level::kInHost, [&] { lv.inHost->barrier(); });
  }
  steps.finish();
}

}  // namespace epcomm::two_level
