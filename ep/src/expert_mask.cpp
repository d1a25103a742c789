#include "ep/src/expert_mask.h"

#include <fmt/format.h>

#include <algorithm>

namespace epcomm::ep {
namespace {

// rows * columns of a [rows, columns] input, 0 where either is negative (refused later).
std::size_t cells(int rows, int columns) {
  return static_cast<std::size_t>(std::max(rows, 0)) *
         static_cast<std::size_t>(std::max(columns, 0));
}

}  // namespace

std::optional<std::string> maskProblem(const ExpertMask& mask, int commSize) {
  if (mask.keptRanks.empty()) {
    if (mask.originalRanks == 0) return std::nullopt;
    return fmt::format("BufferConfig::mask: originalRanks {} is set but keptRanks is empty",
                       mask.originalRanks);
  }
  if (static_cast<int>(mask.keptRanks.size()) != commSize) {
    return fmt::format(
        "BufferConfig::mask: keptRanks has {} entries, the communicator {} ranks (pass the "
        "keptRanks Communicator::shrink returned)",
        mask.keptRanks.size(), commSize);
  }
  if (mask.originalRanks < commSize) {
    return fmt::format(
        "BufferConfig::mask: originalRanks {} is less than the communicator's {} "
        "ranks",
        mask.originalRanks, commSize);
  }
  std::vector<int> seen(static_cast<std::size_t>(mask.originalRanks), 0);
  for (int r = 0; r < commSize; ++r) {
    const int k = mask.keptRanks[static_cast<std::size_t>(r)];
    if (k < 0 || k >= mask.originalRanks || seen[static_cast<std::size_t>(k)]++ != 0) {
      return fmt::format(
          "BufferConfig::mask: keptRanks[{}] = {} is outside [0, originalRanks = {}) or repeated",
          r, k, mask.originalRanks);
    }
  }
  return std::nullopt;
}

ExpertMap::ExpertMap(const ExpertMask& mask, int commSize) {
  if (mask.keptRanks.empty()) return;
  originalRanks_ = mask.originalRanks;
  commSize_ = commSize;
  rankOf_.assign(static_cast<std::size_t>(originalRanks_), -1);
  for (int r = 0; r < commSize; ++r) {
    rankOf_[static_cast<std::size_t>(mask.keptRanks[static_cast<std::size_t>(r)])] = r;
  }
}

std::optional<std::string> ExpertMap::problem(int numExperts) const {
  if (!active() || (numExperts > 0 && numExperts % originalRanks_ == 0)) return std::nullopt;
  return fmt::format(
      "numExperts {} must be a positive multiple of the {} ranks the experts are laid out over "
      "(BufferConfig::mask.originalRanks)",
      numExperts, originalRanks_);
}

int ExpertMap::inner(int numExperts) const {
  if (!active() || problem(numExperts)) return numExperts;
  return numExperts / originalRanks_ * commSize_;
}

const std::int64_t* ExpertMap::topk(const std::int64_t* idx, std::size_t n, int numExperts,
                                    std::vector<std::int64_t>& scratch) const {
  if (!idx || problem(numExperts)) return idx;
  const int perRank = numExperts / originalRanks_;
  scratch.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t e = idx[i];
    if (e < 0 || e >= numExperts) {
      scratch[i] = e;  // -1 stays -1; an invalid index stays invalid (>= inner count)
      continue;
    }
    const int owner = rankOf_[static_cast<std::size_t>(e / perRank)];
    scratch[i] = owner < 0 ? -1 : static_cast<std::int64_t>(owner) * perRank + e % perRank;
  }
  return scratch.data();
}

const LayoutInputs& ExpertMap::apply(const LayoutInputs& given, LayoutInputs& local) {
  if (!active()) return given;
  local = given;
  local.numExperts = inner(given.numExperts);
  local.topkIdx =
      topk(given.topkIdx, cells(given.numTokens, given.numTopk), given.numExperts, layoutTopk_);
  return local;
}

const DispatchInputs& ExpertMap::apply(const DispatchInputs& given, DispatchInputs& local) {
  if (!active()) return given;
  local = given;
  local.numExperts = inner(given.numExperts);
  if (given.handle) return local;  // cached: the handle carries the communicator's numbering
  local.topkIdx =
      topk(given.topkIdx, cells(given.numTokens, given.numTopk), given.numExperts, dispatchTopk_);
  if (given.numTokensPerExpert && !problem(given.numExperts)) {
    // The kept ranks' counts, in the communicator's order.
    const int perRank = given.numExperts / originalRanks_;
    perExpert_.assign(static_cast<std::size_t>(local.numExperts), 0);
    for (int o = 0; o < originalRanks_; ++o) {
      const int r = rankOf_[static_cast<std::size_t>(o)];
      if (r < 0) continue;
      std::copy_n(given.numTokensPerExpert + static_cast<std::size_t>(o) * perRank, perRank,
                  perExpert_.begin() + static_cast<std::ptrdiff_t>(r) * perRank);
    }
    local.numTokensPerExpert = perExpert_.data();
  }
  return local;
}

const LowLatencyDispatchInputs& ExpertMap::apply(const LowLatencyDispatchInputs& given,
                                                 LowLatencyDispatchInputs& local) {
  if (!active()) return given;
  local = given;
  local.numExperts = inner(given.numExperts);
  // Two dispatches' inputs live at once (the slots alternate); scratch alternates with them.
  static_assert(sizeof(llDispatchTopk_) / sizeof(llDispatchTopk_[0]) == 2);
  std::vector<std::int64_t>& scratch = llDispatchTopk_[llDispatches_++ % 2];
  local.topkIdx =
      topk(given.topkIdx, cells(given.numTokens, given.numTopk), given.numExperts, scratch);
  return local;
}

const LowLatencyCombineInputs& ExpertMap::apply(const LowLatencyCombineInputs& given,
                                                LowLatencyCombineInputs& local) {
  if (!active()) return given;
  local = given;
  // The handle carries the communicator's count; the caller's is originalRanks' worth of it.
  const int numExperts = given.handle.numExperts / commSize_ * originalRanks_;
  local.topkIdx = topk(given.topkIdx, cells(given.handle.numTokens, given.handle.numTopk),
                       numExperts, llCombineTopk_[llCombines_++ % 2]);
  return local;
}

void ExpertMap::restore(LayoutOutputs& out, int numExperts) const {
  if (!active() || problem(numExperts) || out.numExperts != inner(numExperts)) return;
  const int perRank = numExperts / originalRanks_;
  HostArray<std::int32_t> counts;
  counts.assign(static_cast<std::size_t>(numExperts), 0);
  for (int o = 0; o < originalRanks_; ++o) {
    const int r = rankOf_[static_cast<std::size_t>(o)];
    if (r < 0) continue;
    std::copy_n(out.numTokensPerExpert.data() + static_cast<std::size_t>(r) * perRank, perRank,
                counts.data() + static_cast<std::size_t>(o) * perRank);
  }
  out.numTokensPerExpert = std::move(counts);
  out.numExperts = numExperts;
}

}  // namespace epcomm::ep
