// The shm all-reduce algorithms by name, as UCC's allreduce algorithm tables: what each
// does, when it can run, and how one is chosen for a call. EPCOMM_SHM_ALLREDUCE forces one
// (where it can run; elsewhere auto decides), EPCOMM_SHM_LINES_MAX_BYTES and
// EPCOMM_SHM_ONESHOT_MAX_BYTES move auto's thresholds, so a many-core node can be tuned
// without a rebuild. The tuning is agreed at init: every rank picks the same algorithm.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "backends/shm/algorithms.h"

namespace epcomm::shm {

struct AllReduceTuning {
  int forced = -1;  // index into allReduceAlgorithms(); -1: auto
  std::size_t linesMaxBytes = kLinesMaxBytes;
  std::size_t oneShotMaxBytes = kOneShotMaxBytes;
};

struct AllReduceAlgorithm {
  const char* name;
  const char* description;
  // Whether it can run a message of `bytes` on `size` ranks.
  bool (*applies)(std::size_t bytes, int size, const AllReduceTuning& tuning);
  void (*run)(const Step& s, const void* send, void* recv, std::size_t count, DataType dtype,
              ReduceOp op);
};

// lines, oneshot, twoshot.
const std::vector<AllReduceAlgorithm>& allReduceAlgorithms();
// The index of the algorithm named `name`, -1 for "auto" or an unknown name.
int allReduceIndex(std::string_view name);
// auto: lines where it applies and the message is at most linesMaxBytes; else one-shot up to
// oneShotMaxBytes (and on one rank); else two-shot. A forced algorithm wherever it applies.
const AllReduceAlgorithm& selectAllReduce(std::size_t bytes, int size,
                                          const AllReduceTuning& tuning);

}  // namespace epcomm::shm
