// Broadcast over two levels: the root's host broadcasts in host, each of its local ranks on
// a full rail broadcasts one share along its rail (every such rank drives the network at
// once; each byte crosses to each other host once), and the other hosts all-gather the
// shares in host. With the call check armed every rank takes part in three steps (in host,
// rail, in host: a barrier where it has nothing to move), so a problem anywhere reaches
// every rank. The root's host stages the data in scratch and writes recv only once every
// step passed, so a failed call moves no data anywhere.
#include <cstring>

#include "comm/two_level/algorithms.h"
#include "comm/types.h"

namespace epcomm::two_level {

void broadcastShares(const Levels& lv, Steps& steps, Scratch& scratch, const void* send, void* recv,
                     std::size_t count, int dtype, int root) {
  const std::size_t es = dtypeSize(static_cast<DataType>(dtype));
  const std::size_t n = steps.ok() ? count : 0;
  const bool armed = steps.armed();
  // A rank whose arguments are invalid (a root outside the communicator, say) takes root 0's
  // steps, moving nothing: the levels' check fails the call everywhere.
  if (!steps.ok() || root < 0 || root >= lv.size) root = 0;
  const int rootHost = lv.layout.hostOf(root);
  const int localSize = lv.localSize();
  const bool onRootHost = lv.host == rootHost;
  const int parts = lv.rails;
  const Share mine = shareOf(n, parts, lv.local);
  // The root's host stages the data until every step passed (recv is written last).
  unsigned char* staged = onRootHost ? scratch.get(0, n * es) : static_cast<unsigned char*>(recv);
  void* share = staged + mine.first * es;
  if (onRootHost) {
    const int rootLocal = lv.layout.localOf(root);
    steps.run(Level::kInHost, [&] { lv.inHost->broadcast(send, staged, n, dtype, rootLocal); });
  } else if (armed) {
    steps.run(Level::kInHost, [&] { lv.inHost->barrier(); });
  }
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
  if (onRootHost && n > 0) std::memcpy(recv, staged, n * es);
  steps.finish();
}

}  // namespace epcomm::two_level
