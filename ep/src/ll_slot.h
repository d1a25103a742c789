// What low-latency mode keeps per shape and per slot, shared by low_latency.cpp and the
// transports (ll_transport_*.cpp).
//
// Slot memory (one MappedArena, regions 4 KiB aligned, pages committed as touched):
//   recvX      [E_local, T*R, H] bf16     recvXInt8 [E_local, T*R, H] int8
//   recvScales [E_local, T*R, H/128 or 1] f32
//   srcInfo    [E_local, T*R] i32         layoutRange [E_local, R] i64   recvCount [E_local]
//   combineBuffer [E_local, T*R, H] bf16 (unless the transport places it)  combined [T, H] bf16
//   send, recv: R blocks of blockBytes each (collective transport only)
// The window transport points recvX / recvXInt8 / recvScales of a dispatch into its window
// instead (peers write them there directly) and places the combine buffer there: its arena
// holds no recvXInt8, recvScales, send or recv (null), and its recvX serves int8 + dequantize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "comm/workers.h"
#include "ep/low_latency.h"
#include "ep/row_kernels.h"
#include "ep/src/mapped_arena.h"

namespace epcomm::ep {

struct LlShape {
  int numRanks = 0;
  int maxTokens = 0;  // T
  int hidden = 0;
  int numExperts = 0;
  int numTopk = 0;
  bool operator==(const LlShape&) const = default;
  int numLocal() const { return numExperts / numRanks; }
  std::size_t rowsPerExpert() const { return static_cast<std::size_t>(maxTokens) * numRanks; }
  int maxScales() const { return hidden % 128 == 0 ? hidden / 128 : 1; }
  // The larger per-row payload (bf16 row, or int8 row + scales: H + 4 * H/128 <= 2H).
  std::size_t payloadBytes() const;
  std::size_t messageBytes() const;  // a collective dispatch message, padded
  std::size_t headerBytes() const;   // a collective dispatch block's counts, padded
  std::size_t blockBytes() const;    // one peer's collective block (dispatch or combine)
  // Messages one source can send one destination per dispatch: T * min(K, E_local).
  std::size_t maxMessagesPerPeer() const;
};

struct LlSlot {
  enum class Pending { kNone, kDispatch, kCombine };
  MappedArena arena;
  Bf16* recvX = nullptr;  // outputs of the slot's dispatch (see above)
  std::int8_t* recvXInt8 = nullptr;
  float* recvScales = nullptr;
  std::int32_t* srcInfo = nullptr;
  std::int64_t* layoutRange = nullptr;
  std::int32_t* recvCount = nullptr;
  Bf16* combineBuffer = nullptr;
  Bf16* combined = nullptr;
  std::byte* send = nullptr;
  std::byte* recv = nullptr;
  // Arena copies of recvX / recvXInt8 / recvScales (the window transport repoints those).
  Bf16* arenaRecvX = nullptr;
  std::int8_t* arenaRecvXInt8 = nullptr;
  float* arenaRecvScales = nullptr;

  std::uint64_t sequence = 0;  // 0: never used
  Pending pending = Pending::kNone;
  bool received = false;  // the dispatch's receive completed (its outputs are valid)
  // The dispatch of this slot.
  int numTokens = 0;
  int numTopk = 0;
  Quant quant = Quant::kNone;
  bool dequantize = false;
  bool zeroCopyDispatch = false;      // rows stay in their sources' windows (pull only)
  std::vector<const Bf16*> rowPtrs;   // zeroCopyDispatch: [E_local, T*R] where each row lives
  std::vector<std::int32_t> msgDest;  // [numTokens, numTopk]: destination rank or -1
  // [numTokens, numTopk]: where the message went (collective: index in the destination's
  // block; window: row in the destination's [E_local, T*R] layout).
  std::vector<std::int32_t> msgPos;
  // Window transport: push dispatch's counts [src][dst][E_local] of every rank (in its
  // window; complete once the dispatch is received), and per received row the message id
  // (t * K + k) at its source (push and pull).
  const std::int32_t* counts = nullptr;
  std::vector<std::int32_t> rowMsg;
  // The pending combine.
  Bf16* combineOut = nullptr;
  const Bf16* combineX = nullptr;  // window: own rows read in place (null: copied)
  bool combinePull = false;        // window: every row read in place from its expert rank
  std::uint64_t combineSequence = 0;
};

// The end of every transport's combine: combineOut[t] = sum over t's messages m that had a
// destination, in k order, of weights[m] * rowOf(m) (the expert output of message m).
// Tokens in parts over the worker threads (comm/workers.h); rowOf must be safe to call
// concurrently (it only computes an address).
template <typename RowOf>
void sumCombinedRows(const LlSlot& slot, int hidden, const float* weights, RowOf rowOf) {
  const int K = slot.numTopk;
  const std::size_t tokenBytes = static_cast<std::size_t>(K + 1) * hidden * sizeof(Bf16);
  parallelFor(static_cast<std::size_t>(slot.numTokens), tokenBytes, 1,
              [&](std::size_t lo, std::size_t hi) {
                std::vector<const Bf16*> rows(K);
                std::vector<float> w(K);
                for (std::size_t t = lo; t < hi; ++t) {
                  int n = 0;
                  for (int k = 0; k < K; ++k) {
                    const std::size_t m = t * K + k;
                    if (slot.msgDest[m] < 0) continue;
                    rows[n] = rowOf(m);
                    w[n++] = weights[m];
                  }
                  sumRows(rows.data(), w.data(), n, hidden, slot.combineOut + t * hidden);
                }
              });
}

}  // namespace epcomm::ep
