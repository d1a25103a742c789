// Experts masked after a shrink (BufferConfig::mask, DeepEP's mask buffer): the caller keeps
// numbering experts over the ranks they were laid out on (mask.originalRanks of them,
// numExperts / originalRanks each), while the Buffer's machinery numbers them over the
// communicator's ranks, where rank r holds the experts of original rank mask.keptRanks[r].
// ExpertMap rewrites the inputs that name experts into the communicator's numbering (an
// expert of a rank not kept becomes -1: nothing is sent for it and combine adds nothing for
// it, so a token routed only there gets zeros) and the layout's per-expert counts back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ep/buffer.h"

namespace epcomm::ep {

class ExpertMap {
 public:
  ExpertMap() = default;  // no mask: every call passes through
  // `mask` checked by maskProblem(mask, commSize) first.
  ExpertMap(const ExpertMask& mask, int commSize);

  bool active() const { return !rankOf_.empty(); }
  // Why the caller's numExperts cannot be mapped, or nullopt (also when inactive).
  std::optional<std::string> problem(int numExperts) const;
  // The communicator's expert count for the caller's numExperts (numExperts where inactive or
  // where problem() objects).
  int inner(int numExperts) const;

  // Each returns `given` where inactive, else a copy in `local` whose expert-naming arrays
  // point into this map's scratch (valid until the same kind of call, and for low-latency
  // calls the same slot, comes again). Indices outside [-1, numExperts) stay invalid.
  const LayoutInputs& apply(const LayoutInputs& given, LayoutInputs& local);
  const DispatchInputs& apply(const DispatchInputs& given, DispatchInputs& local);
  const LowLatencyDispatchInputs& apply(const LowLatencyDispatchInputs& given,
                                        LowLatencyDispatchInputs& local);
  const LowLatencyCombineInputs& apply(const LowLatencyCombineInputs& given,
                                       LowLatencyCombineInputs& local);
  // The layout's numTokensPerExpert back in the caller's numbering (zeros for masked
  // experts), numExperts = the caller's.
  void restore(LayoutOutputs& out, int numExperts) const;

 private:
  const std::int64_t* topk(const std::int64_t* idx, std::size_t n, int numExperts,
                           std::vector<std::int64_t>& scratch) const;

  int originalRanks_ = 0;
  int commSize_ = 0;
  std::vector<int> rankOf_;  // [originalRanks]: the communicator rank holding them, or -1
  std::vector<std::int64_t> layoutTopk_, dispatchTopk_, llDispatchTopk_[2], llCombineTopk_[2];
  std::vector<std::int32_t> perExpert_;
  std::uint64_t llDispatches_ = 0, llCombines_ = 0;  // pick the scratch of the next call
};

// Why `mask` cannot describe a Buffer on a communicator of commSize ranks, or nullopt.
std::optional<std::string> maskProblem(const ExpertMask& mask, int commSize);

}  // namespace epcomm::ep
