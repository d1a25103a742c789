#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "comm/agreement.h"
#include "ep/buffer.h"
#include "ep/src/buffer_state.h"

namespace epcomm::ep {

bool computeDispatchLayout(const LayoutInputs& in, int numRanks, LayoutOutputs& out,
                           std::string* problem) {
  auto bad = [&](std::string what) {
    if (problem) *problem = std::move(what);
    return false;
  };
  if (in.numTokens < 0) return bad(fmt::format("numTokens {} < 0", in.numTokens));
  if (in.numTopk <= 0) return bad(fmt::format("numTopk {} must be >= 1", in.numTopk));
  if (in.numExperts <= 0 || numRanks <= 0 || in.numExperts % numRanks != 0) {
    return bad(fmt::format("numExperts {} must be a positive multiple of the number of ranks {}",
                           in.numExperts, numRanks));
  }
  if (in.numTokens > 0 && !in.topkIdx) return bad("topkIdx is null");
  const int perRank = in.numExperts / numRanks;
  out.numTokens = in.numTokens;
  out.numRanks = numRanks;
  out.numExperts = in.numExperts;
  out.numTokensPerRank.assign(numRanks, 0);
  out.numTokensPerExpert.assign(in.numExperts, 0);
  out.isTokenInRank.assign(static_cast<std::size_t>(in.numTokens) * numRanks, 0);
  for (int t = 0; t < in.numTokens; ++t) {
    const std::int64_t* idx = in.topkIdx + static_cast<std::size_t>(t) * in.numTopk;
    std::uint8_t* inRank = out.isTokenInRank.data() + static_cast<std::size_t>(t) * numRanks;
    for (int k = 0; k < in.numTopk; ++k) {
      const std::int64_t e = idx[k];
      if (e == -1) continue;
      if (e < -1 || e >= in.numExperts) {
        return bad(fmt::format("topkIdx[{}, {}] = {} is outside [-1, numExperts = {})", t, k, e,
                               in.numExperts));
      }
      ++out.numTokensPerExpert[static_cast<std::size_t>(e)];
      inRank[e / perRank] = 1;
    }
    for (int r = 0; r < numRanks; ++r) out.numTokensPerRank[r] += inRank[r];
  }
  return true;
}

void Buffer::getDispatchLayout(const LayoutInputs& given, LayoutOutputs& out) {
  Communicator& comm = state_->comm;
  const Communicator::CallScope call(comm, "ep::getDispatchLayout");
  CallAgreement agreement("ep::getDispatchLayout");
  LayoutInputs translated;
  const LayoutInputs& in = state_->mask.apply(given, translated);
  if (auto masked = state_->mask.problem(given.numExperts)) agreement.fail(*masked);
  std::string problem;
  if (!computeDispatchLayout(in, comm.size(), out, &problem)) agreement.fail(problem);
  agreement.same("numExperts", in.numExperts);
  agreement.same("numTopk", in.numTopk);
  comm.agree(agreement);
  state_->mask.restore(out, given.numExperts);
}

}  // namespace epcomm::ep
