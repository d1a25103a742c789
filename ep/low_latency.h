// Low-latency mode (decode): DeepEP's low_latency_dispatch / low_latency_combine.
//
// Capacity T = numMaxDispatchTokensPerRank (EPCOMM_EP_LL_MAX_TOKENS, default 128): a rank
// dispatches at most T tokens per call (more is an error naming T and its knob). Every
// (token, slot) pair with an expert is one message to the expert's rank; a token listing
// one expert twice is an error. Rank r receives, per local expert e, the rows of recvX
// [numLocalExperts, T * R, hidden] from row 0: source rank 0's tokens first (in increasing
// token index), then rank 1's, ... recvCount[e] rows are valid; srcInfo[e][i] is row i's
// token index at its source; layoutRange[e][s] = (begin << 32) | count of source s's rows.
//
// Results live in the Buffer: two slots alternate, one per dispatch, so the outputs (and
// the handle) of the last two dispatches stay valid; the third dispatch reuses the first's
// slot. With returnRecvHook, dispatch (and combine) only send; outputs are valid after the
// caller runs `hook` (every rank, in the same order), so compute can overlap the transfer.
//
// Combine: x [numLocalExperts, T * R, hidden] holds the expert outputs in recvX's layout
// (or lives in the Buffer's zero-copy combine buffer, Buffer::lowLatencyCombineBuffer);
// combinedX[t] = sum over slots k with an expert of topkWeights[t, k] * x[row of (t, k)],
// accumulated in f32. Zero-copy: where every peer's window is mapped (shm, mpi on one node)
// the sources read the rows in place, so the buffer must not be written again until this
// rank's combine completed (returned, or its hook ran); the combine then waits until no
// peer still reads it. A combine is zero-copy on every rank or on none (an error otherwise;
// x pointing into the zero-copy buffer counts as zero-copy).
#pragma once

#include <cstdint>
#include <functional>

#include "../comm/half.h"
#include "quant.h"

namespace epcomm::ep {

struct LowLatencyHandle {
  int slot = -1;               // the Buffer slot holding this dispatch's layout
  std::uint64_t sequence = 0;  // which dispatch of that slot (stale handles are refused)
  int numTokens = 0;
  int numTopk = 0;
  int hidden = 0;
  int numExperts = 0;
};

struct LowLatencyDispatchInputs {
  const Bf16* x = nullptr;  // [numTokens, hidden], numTokens <= T
  int numTokens = 0;
  int hidden = 0;
  const std::int64_t* topkIdx = nullptr;  // [numTokens, numTopk]; -1 = none
  int numTopk = 0;
  int numExperts = 0;
  Quant quant = Quant::kNone;  // int8 on request (kInt8Group / kInt8PerToken)
  bool dequantize = false;     // int8: also fill recvX with the dequantised rows
  bool returnRecvHook = false;
  // Zero-copy dispatch (beyond DeepEP; bf16, the window transport with every peer's window
  // mapped: shm, or mpi on one node): no row moves between ranks. Each rank stages its
  // tokens once in its own window and recvRows says where every received row lives, for an
  // expert kernel that gathers its input rows anyway; recvX is not filled. The rows are
  // peers' memory, read only, valid as long as this dispatch's other outputs. Combine is
  // unchanged. Every rank passes the same value.
  bool zeroCopy = false;
};

// Views into the Buffer slot of this dispatch (see above for how long they live).
struct LowLatencyDispatchOutputs {
  int numLocalExperts = 0;
  int numRanks = 0;
  int maxTokens = 0;  // T; rows per expert = T * numRanks
  int hidden = 0;
  int numScales = 0;
  Quant quant = Quant::kNone;
  Bf16* recvX = nullptr;             // [numLocalExperts, T * R, hidden] (bf16, or dequantised)
  std::int8_t* recvXInt8 = nullptr;  // [numLocalExperts, T * R, hidden] (int8)
  float* recvScales = nullptr;       // [numLocalExperts, T * R, numScales] (int8)
  const std::int32_t* recvCount = nullptr;    // [numLocalExperts]
  const std::int32_t* srcInfo = nullptr;      // [numLocalExperts, T * R]
  const std::int64_t* layoutRange = nullptr;  // [numLocalExperts, R]
  // zeroCopy: [numLocalExperts, T * R], row i of local expert e at recvRows[e * T*R + i]
  // (recvCount[e] valid); null otherwise.
  const Bf16* const* recvRows = nullptr;
  LowLatencyHandle handle;
  std::function<void()> hook;  // set with returnRecvHook: receives; call exactly once
  std::size_t bytesSent = 0;   // payload sent to other ranks
};

struct LowLatencyCombineInputs {
  const Bf16* x = nullptr;                // [numLocalExperts, T * R, hidden]; null with zeroCopy
  const std::int64_t* topkIdx = nullptr;  // the dispatch's [numTokens, numTopk]
  const float* topkWeights = nullptr;     // [numTokens, numTopk]
  LowLatencyHandle handle;
  bool zeroCopy = false;  // x was written into Buffer::lowLatencyCombineBuffer(handle)
  Bf16* out = nullptr;    // [numTokens, hidden]; null: a Buffer-owned array in the slot
  bool returnRecvHook = false;
};

struct LowLatencyCombineOutputs {
  Bf16* combinedX = nullptr;  // [numTokens, hidden]
  int numTokens = 0;
  std::function<void()> hook;  // set with returnRecvHook
  std::size_t bytesSent = 0;
};

}  // namespace epcomm::ep
