// Normal mode (prefill / extend, throughput): DeepEP's Buffer.dispatch / Buffer.combine with
// named inputs and outputs.
//
// Dispatch sends one copy of each token to every rank that owns at least one of its experts.
// Rank r receives recvX grouped by source rank (source 0's tokens first), each source's
// tokens in increasing token index; recvTopkIdx holds local expert ids (global id - r * E/R)
// where the expert is on r and -1 elsewhere, recvTopkWeights the weight where the expert is
// local and 0 elsewhere. numRecvTokensPerExpert counts, per local expert, the received
// (token, slot) pairs naming it, rounded up to expertAlignment.
//
// Combine is the reverse: x holds one row per received row (same order); the rows of a
// token coming back from every rank it went to are summed in f32 into combinedX[token]
// (unweighted, as DeepEP). With `weighted`, each row is first multiplied by the sum of its
// topkWeights row (the weights of the experts local to the rank that computed it), so the
// result is the MoE's weighted sum (as DeepEP-Ascend's combine).
//
// Long inputs go in rounds of at most `roundTokens` source tokens (EPCOMM_EP_ROUND_TOKENS /
// EPCOMM_EP_ROUNDS): the Buffer bounds the memory of one round, not the sequence length.
// Rounds do not change the output layout.
#pragma once

#include <cstdint>
#include <vector>

#include "../comm/half.h"
#include "host_array.h"
#include "layout.h"
#include "quant.h"

namespace epcomm::ep {

// What dispatch learnt about the layout; pass it back for a cached dispatch (same tokens to
// the same ranks, no layout exchange) and to combine. Plain data, copyable.
struct DispatchHandle {
  int numRanks = 0;
  int rank = 0;
  int numTokens = 0;  // source tokens on this rank
  int hidden = 0;
  int numExperts = 0;
  int roundTokens = 0;                      // source tokens per round (the same on every rank)
  int numRounds = 0;                        // the same on every rank
  int numRecvTokens = 0;                    // rows received
  std::vector<std::uint8_t> isTokenInRank;  // [numTokens, numRanks]
  std::vector<std::int64_t> sendCounts;     // [numRounds, numRanks]: rows sent per round
  std::vector<std::int64_t> recvCounts;     // [numRounds, numRanks]: rows received per round
  std::vector<std::int64_t> rankPrefix;     // [numRanks + 1]: first recv row of each source
  std::vector<std::int32_t> recvSrcIdx;     // [numRecvTokens]: token index at its source
  // Across hosts (EPCOMM_EP_HOST_RELAY, ep/src/host_relay.h): the tokens this rank forwarded
  // inside its host, per source host h relayCounts[h] records [token index at its source,
  // mask of the local ranks it went to], host by host. Empty where the flat path ran.
  std::vector<std::int64_t> relayCounts;   // [numHosts]
  std::vector<std::int32_t> relayRecords;  // [sum of relayCounts, 2]
  bool valid() const { return numRanks > 0; }
};

struct DispatchInputs {
  const Bf16* x = nullptr;  // [numTokens, hidden]
  int numTokens = 0;
  int hidden = 0;
  const std::int64_t* topkIdx = nullptr;  // [numTokens, numTopk]; -1 = none. Not cached mode.
  const float* topkWeights = nullptr;     // [numTokens, numTopk]; optional
  int numTopk = 0;
  int numExperts = 0;
  const DispatchHandle* handle = nullptr;  // cached mode: reuse its layout, topk not sent
  // DeepEP's layout arguments as getDispatchLayout returned them (both or neither: one alone
  // is refused; ignored in cached mode): used as given, not derived from topkIdx again. Rows
  // move where isTokenInRank says; topkIdx only labels them (local ids) and must agree with it.
  const std::uint8_t* isTokenInRank = nullptr;       // [numTokens, numRanks], 0 or 1
  const std::int32_t* numTokensPerExpert = nullptr;  // [numExperts]
  int expertAlignment = 1;
  Quant quant = Quant::kDefault;  // kDefault: the Buffer's (EPCOMM_EP_INT8)
  bool dequantize = false;        // int8: also fill recvX with the dequantised tokens
  // Pre-quantised tokens (DeepEP's `(data, scales)` x): int8 [numTokens, hidden] and f32
  // scales, one per quantisation group, scale g of token t at
  // xScales[t * scalesTokenStride + g * scalesGroupStride] (any strides: DeepEP's scales are
  // often column-major). x is then not read; quant must be int8 and its group must match.
  const std::int8_t* xInt8 = nullptr;
  const float* xScales = nullptr;
  std::int64_t scalesTokenStride = 0;
  std::int64_t scalesGroupStride = 1;
  // DeepEP's num_worst_tokens: > 0 pads every row output to exactly this many rows (padding
  // rows: x and scales zero, topk ids -1, weights 0) and leaves numRecvTokensPerExpert
  // empty. A rank that would receive more rows than this is an InvalidArgument error on
  // every rank before token data moves (a fresh dispatch learns its row count from the
  // counts exchange, so one more small agreement follows it where any rank passes this).
  int numWorstTokens = 0;
};

struct DispatchOutputs {
  int numRecvTokens = 0;  // rows received (the arrays hold numWorstTokens rows when given)
  int hidden = 0;
  int numTopk = 0;    // 0 in cached mode (no topk received)
  int numScales = 0;  // int8: scales per row
  Quant quant = Quant::kNone;
  HostArray<Bf16> recvX;                    // [numRecvTokens, hidden]: bf16, or int8 + dequantize
  HostArray<std::int8_t> recvXInt8;         // [numRecvTokens, hidden]: int8 mode
  HostArray<float> recvScales;              // [numRecvTokens, numScales]: int8 mode
  HostArray<std::int64_t> recvTopkIdx;      // [numRecvTokens, numTopk]
  HostArray<float> recvTopkWeights;         // [numRecvTokens, numTopk] (zeros without weights)
  std::vector<int> numRecvTokensPerExpert;  // [numLocalExperts], rounded up to the alignment
  DispatchHandle handle;
  std::size_t bytesSent = 0;  // payload this rank sent to other ranks (tokens, scales, topk)
};

struct CombineInputs {
  const Bf16* x = nullptr;  // [handle->numRecvTokens, hidden], dispatch order
  int hidden = 0;
  const DispatchHandle* handle = nullptr;  // from the dispatch being reversed
  // [numRecvTokens, numTopk]; optional (as DeepEP). numTopk > 0 means weights are given; the
  // pointer may then be null only where numRecvTokens is 0 (an empty recvTopkWeights).
  const float* topkWeights = nullptr;
  int numTopk = 0;
  bool weighted = false;  // scale each row by the sum of its topkWeights row (needs them)
};

struct CombineOutputs {
  int numTokens = 0;
  HostArray<Bf16> combinedX;             // [numTokens, hidden]
  HostArray<float> combinedTopkWeights;  // [numTokens, numTopk] when weights were given
  std::size_t bytesSent = 0;
};

}  // namespace epcomm::ep
