#include "ep/src/normal_plan.h"

#include <fmt/format.h>

#include <algorithm>

#include "comm/error.h"

namespace epcomm::ep {

void NormalPlan::setSizes(int hidden, int numTopk, Quant quant, int group) {
  const int numScales = isInt8(quant) ? hidden / group : 0;
  rowBytes = static_cast<std::size_t>(hidden) * (isInt8(quant) ? 1 : 2);
  metaWords = (numTopk > 0 ? 1 + 2 * static_cast<std::size_t>(numTopk) : 0) + numScales;
}

std::string NormalPlan::bufferProblem(std::size_t capacity) const {
  const std::size_t mib = (neededBytes + (std::size_t{1} << 20) - 1) >> 20;
  return fmt::format(
      "normal-mode staging too small: one round needs {} bytes, the Buffer has {} "
      "(EPCOMM_EP_BUFFSIZE); set EPCOMM_EP_BUFFSIZE={} (MiB) or more, or split the batch into "
      "rounds (EPCOMM_EP_ROUND_TOKENS / EPCOMM_EP_ROUNDS)",
      neededBytes, capacity, mib);
}

NormalPlan NormalPlan::cached(const DispatchHandle& h, Quant quant, int group) {
  NormalPlan p;
  p.numRanks = h.numRanks;
  p.rank = h.rank;
  p.roundTokens = h.roundTokens;
  p.numRounds = h.numRounds;
  p.setSizes(h.hidden, 0, quant, group);
  p.sendCounts = h.sendCounts;
  p.recvCounts = h.recvCounts;
  p.rankPrefix = h.rankPrefix;
  for (int j = 0; j < p.numRounds; ++j) {
    std::size_t out = 0, in = 0;
    for (int r = 0; r < p.numRanks; ++r) {
      if (r == p.rank) continue;
      out += static_cast<std::size_t>(h.sendCounts[j * p.numRanks + r]);
      in += static_cast<std::size_t>(h.recvCounts[j * p.numRanks + r]);
    }
    p.neededBytes = std::max(p.neededBytes, p.roundBytes(out, in));
  }
  return p;
}

NormalPlan NormalPlan::fresh(const LayoutOutputs& layout, int maxTokens, int hidden, int numTopk,
                             Quant quant, int group, const BufferConfig& config, int rank) {
  NormalPlan p;
  p.numRanks = layout.numRanks;
  p.rank = rank;
  p.setSizes(hidden, numTopk, quant, group);
  // DeepEP-Ascend's long-sequence rounds: rounds of roundTokens tokens, at most `rounds` of
  // them (a batch beyond rounds x roundTokens gets larger rounds); a batch that fits one
  // round runs in one. roundTokens 0: no split.
  const int tokens = std::max(maxTokens, 1);
  int rt = config.roundTokens > 0 ? std::min(config.roundTokens, tokens) : tokens;
  const int maxRounds = config.rounds > 0 ? config.rounds : tokens;  // 0: no limit
  if ((tokens + rt - 1) / rt > maxRounds) rt = (tokens + maxRounds - 1) / maxRounds;
  p.roundTokens = rt;
  p.numRounds = (tokens + rt - 1) / rt;
  const int R = p.numRanks;
  p.sendCounts.assign(static_cast<std::size_t>(p.numRounds) * R, 0);
  for (int t = 0; t < layout.numTokens; ++t) {
    const std::uint8_t* inRank = layout.isTokenInRank.data() + static_cast<std::size_t>(t) * R;
    std::int64_t* counts = p.sendCounts.data() + static_cast<std::size_t>(t / p.roundTokens) * R;
    for (int r = 0; r < R; ++r) counts[r] += inRank[r];
  }
  return p;
}

void NormalPlan::exchangeCounts(Communicator& comm, const LayoutOutputs& layout,
                                std::size_t capacity, const char* op) {
  const int R = numRanks;
  const int numLocal = layout.numExperts / R;
  // Staging bound: every peer may send a full round of rows (metadata only is staged).
  for (int j = 0; j < numRounds; ++j) {
    std::size_t out = 0;
    for (int r = 0; r < R; ++r) {
      if (r != rank) out += static_cast<std::size_t>(sendCounts[j * R + r]);
    }
    neededBytes =
        std::max(neededBytes, roundBytes(out, static_cast<std::size_t>(R - 1) * roundTokens));
  }
  const std::size_t len = 1 + static_cast<std::size_t>(numRounds) + numLocal;
  std::vector<std::int64_t> send(len * R), recv(len * R);
  for (int r = 0; r < R; ++r) {
    std::int64_t* rec = send.data() + r * len;
    rec[0] = neededBytes > capacity ? static_cast<std::int64_t>(neededBytes) : 0;
    for (int j = 0; j < numRounds; ++j) rec[1 + j] = sendCounts[j * R + r];
    for (int e = 0; e < numLocal; ++e)
      rec[1 + numRounds + e] = layout.numTokensPerExpert[r * numLocal + e];
  }
  comm.allToAll(send.data(), recv.data(), len, DataType::kI64);

  std::string problem;
  for (int s = 0; s < R; ++s) {
    const std::int64_t needed = recv[s * len];
    if (needed == 0) continue;
    if (!problem.empty()) problem += "; ";
    NormalPlan other;
    other.neededBytes = static_cast<std::size_t>(needed);
    if (s != rank) problem += fmt::format("rank {}: ", s);
    problem += other.bufferProblem(capacity);
  }
  if (!problem.empty()) throwError(ErrorCode::kInvalidArgument, rank, op, problem);

  recvCounts.assign(static_cast<std::size_t>(numRounds) * R, 0);
  recvExpertCounts.assign(numLocal, 0);
  rankPrefix.assign(R + 1, 0);
  for (int s = 0; s < R; ++s) {
    const std::int64_t* rec = recv.data() + s * len;
    std::int64_t total = 0;
    for (int j = 0; j < numRounds; ++j) {
      recvCounts[j * R + s] = rec[1 + j];
      total += rec[1 + j];
    }
    rankPrefix[s + 1] = rankPrefix[s] + total;
    for (int e = 0; e < numLocal; ++e) recvExpertCounts[e] += rec[1 + numRounds + e];
  }
}

}  // namespace epcomm::ep
