#include "backends/shm/all_reduce_algorithms.h"

namespace epcomm::shm {

const std::vector<AllReduceAlgorithm>& allReduceAlgorithms() {
  static const std::vector<AllReduceAlgorithm> kAlgorithms = {
      {"lines",
       "data and arrival flag share each cache line; every rank reduces every rank's lines "
       "(small messages: one transfer per line, no separate flag)",
       [](std::size_t bytes, int size, const AllReduceTuning& t) {
         return fitsLines(bytes, size) && bytes <= t.linesMaxBytes;
       },
       &allReduceLines},
      {"oneshot",
       "every rank copies its message into its slot, then reduces the whole message from "
       "every slot (one step; small and mid messages, and when ranks outnumber the cores)",
       [](std::size_t, int, const AllReduceTuning&) { return true; }, &allReduceOneShot},
      {"twoshot",
       "reduce-scatter then all-gather through the slots, pipelined in chunks: each rank "
       "reduces a 1/P share (large messages; two steps)",
       [](std::size_t, int size, const AllReduceTuning&) { return size > 1; }, &allReduceTwoShot},
  };
  return kAlgorithms;
}

int allReduceIndex(std::string_view name) {
  const std::vector<AllReduceAlgorithm>& all = allReduceAlgorithms();
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (name == all[i].name) return static_cast<int>(i);
  }
  return -1;
}

const AllReduceAlgorithm& selectAllReduce(std::size_t bytes, int size,
                                          const AllReduceTuning& tuning) {
  const std::vector<AllReduceAlgorithm>& all = allReduceAlgorithms();
  if (tuning.forced >= 0) {
    const AllReduceAlgorithm& forced = all[static_cast<std::size_t>(tuning.forced)];
    if (forced.applies(bytes, size, tuning)) return forced;
  }
  if (all[0].applies(bytes, size, tuning)) return all[0];
  if (bytes <= tuning.oneShotMaxBytes || size == 1) return all[1];
  return all[2];
}

}  // namespace epcomm::shm
