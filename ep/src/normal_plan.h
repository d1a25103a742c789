// The plan of one normal-mode dispatch: rounds, row and metadata sizes, per-round counts,
// where each source's rows land, and how much staging one round needs. Shared by dispatch
// (fresh or cached) so that the size check and the staging layout use the same formulas.
//
// Staging of one dispatch round (in the Buffer's normal arena):
//   [rows to peers, rowBytes each][metadata to peers][metadata from peers]
// A metadata record is int32 words: [source token index, local expert id x numTopk,
// weight (f32 bits) x numTopk] (not in cached mode), then the int8 scales (f32 bits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "ep/buffer.h"

namespace epcomm::ep {

inline std::size_t alignUp(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

// How many of the tokens [from, to) go to rank r (h.isTokenInRank): a part of a per-token
// loop that starts at token `to` finds there its first row of r, counted from token `from`'s.
inline std::size_t tokensToRank(const DispatchHandle& h, int from, int to, int r) {
  std::size_t n = 0;
  for (int t = from; t < to; ++t)
    n += h.isTokenInRank[static_cast<std::size_t>(t) * h.numRanks + r];
  return n;
}

struct NormalPlan {
  int numRanks = 0;
  int rank = 0;
  int roundTokens = 1;
  int numRounds = 1;
  std::size_t rowBytes = 0;                    // one token row on the wire (bf16 or int8)
  std::size_t metaWords = 0;                   // one metadata record, int32 words
  std::vector<std::int64_t> sendCounts;        // [numRounds, numRanks]
  std::vector<std::int64_t> recvCounts;        // [numRounds, numRanks]
  std::vector<std::int64_t> rankPrefix;        // [numRanks + 1]
  std::vector<std::int64_t> recvExpertCounts;  // [numLocalExperts] (fresh dispatch only)
  std::size_t neededBytes = 0;                 // staging of the largest round

  // A dispatch that reuses `handle`'s layout (counts known, no exchange).
  static NormalPlan cached(const DispatchHandle& handle, Quant quant, int group);
  // A dispatch with a new layout; maxTokens is the agreed largest numTokens of any rank.
  // recvCounts/rankPrefix are filled by exchangeCounts.
  static NormalPlan fresh(const LayoutOutputs& layout, int maxTokens, int hidden, int numTopk,
                          Quant quant, int group, const BufferConfig& config, int rank);

  // Collective: an all-to-all of counts (and of "my staging is too small" flags, so a size
  // problem on any rank is an error on every rank before token data moves).
  void exchangeCounts(Communicator& comm, const LayoutOutputs& layout, std::size_t capacity,
                      const char* op);

  std::size_t metaOffset(std::size_t rowsOut) const { return alignUp(rowsOut * rowBytes, 64); }
  std::size_t metaInOffset(std::size_t rowsOut) const {
    return metaOffset(rowsOut) + alignUp(rowsOut * metaWords * 4, 64) + 64;  // never aliases
  }
  // Staging of a round sending rowsOut rows to peers and receiving rowsIn from them.
  std::size_t roundBytes(std::size_t rowsOut, std::size_t rowsIn) const {
    return metaInOffset(rowsOut) + rowsIn * metaWords * 4;
  }
  std::string bufferProblem(std::size_t capacity) const;

 private:
  void setSizes(int hidden, int numTopk, Quant quant, int group);
};

}  // namespace epcomm::ep
