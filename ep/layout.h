// Dispatch layout (DeepEP's get_dispatch_layout): from topkIdx [numTokens, numTopk] (-1 =
// no expert) and an even split of numExperts over numRanks (rank r owns experts
// [r * E/R, (r + 1) * E/R)), how many tokens go to each rank and expert and which ranks
// each token goes to. Buffer::getDispatchLayout is the collective, checked form.
#pragma once

#include <cstdint>
#include <string>

#include "../comm/export.h"
#include "host_array.h"

namespace epcomm::ep {

struct LayoutInputs {
  const std::int64_t* topkIdx = nullptr;  // [numTokens, numTopk]; -1 = no expert
  int numTokens = 0;
  int numTopk = 0;
  int numExperts = 0;
};

struct LayoutOutputs {
  int numTokens = 0;
  int numRanks = 0;
  int numExperts = 0;
  HostArray<std::int32_t> numTokensPerRank;    // [numRanks]: tokens with >= 1 expert there
  HostArray<std::int32_t> numTokensPerExpert;  // [numExperts]: (token, slot) pairs per expert
  HostArray<std::uint8_t> isTokenInRank;       // [numTokens, numRanks], 0 or 1
};

// Local (no communication). Returns false and leaves a message in `problem` when an index is
// outside [-1, numExperts) or the shape is invalid; `out` is then unspecified.
EPCOMM_API bool computeDispatchLayout(const LayoutInputs& in, int numRanks, LayoutOutputs& out,
                                      std::string* problem);

}  // namespace epcomm::ep
