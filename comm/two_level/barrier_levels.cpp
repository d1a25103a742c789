// Barrier over two levels: in host (every rank of the host arrived), then the full rails
// (every host arrived: a rail member leaves its in-host barrier only after its whole host
// arrived), then, where hosts are uneven, in host again for the ranks on no full rail.
#include "comm/two_level/algorithms.h"

namespace epcomm::two_level {

void barrierLevels(const Levels& lv, Steps& steps) {
  steps.run(Level::kInHost, [&] { lv.inHost->barrier(); });
  if (lv.onRail()) steps.run(Level::kRail, [&] { lv.rail->barrier(); });
  if (!lv.allOnRails()) steps.run(Level::kInHost, [&] { lv.inHost->barrier(); });
  steps.finish();
}

}  // namespace epcomm::two_level
