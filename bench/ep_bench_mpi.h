// The plain-MPI baseline of ep-bench: the same dispatch/combine semantics and outputs as
// ep::Buffer, written the way a careful engineer would on MPI alone: arrays kept across
// calls, one layout pass, and no packing or unpacking copy: per-peer MPI datatypes over the
// rows where they are (bench/mpi_placement.h), one MPI_Alltoallw per exchange. Normal mode:
// an MPI_Alltoall of per-destination counts, then one exchange of each destination's rows
// (straight from x, or each token quantised once) and metadata (source index, local topk ids
// and weights, int8 scales) straight into recvX and the metadata array; combine: one
// MPI_Alltoallv sending the rows back straight from x, then an f32 sum per token with
// ep::sumRows, the library's own kernel (so combine ratios compare transports, not kernels).
// Low-latency mode: one fixed-size MPI_Alltoall of per-(destination, local expert) counts and
// token ids, then one exchange of the (token, expert) rows from x straight into the
// expert-major layout; combine sends each source's rows back straight from the expert
// outputs and sums them times the weights.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <vector>

#include "bench/mpi_placement.h"
#include "comm/half.h"
#include "ep/quant.h"

namespace epcomm::bench {

struct MpiShape {
  int numTokens = 0;
  int hidden = 0;
  int numTopk = 0;
  int numExperts = 0;
  ep::Quant quant = ep::Quant::kNone;
  int maxTokens = 0;  // low-latency T
};

class MpiEp {
 public:
  MpiEp(MPI_Comm comm, const MpiShape& shape);

  // Normal mode. After dispatch: recvX (bf16) or recvXInt8 + recvScales, recvTopkIdx,
  // recvTopkWeights, rows grouped by source in token order (as ep::Buffer::dispatch).
  void dispatch(const Bf16* x, const std::int64_t* topkIdx, const float* topkWeights);
  void combine(const Bf16* x);  // x: [numRecv, hidden] in dispatch order
  // Low-latency mode: recvX [local, T * R, hidden] as ep::Buffer::lowLatencyDispatch.
  void llDispatch(const Bf16* x, const std::int64_t* topkIdx);
  void llCombine(const Bf16* x, const float* topkWeights);

  std::size_t numRecv = 0;
  std::size_t bytesSent = 0;
  std::vector<Bf16> recvX;
  std::vector<std::int8_t> recvXInt8;
  std::vector<float> recvScales;
  std::vector<std::int64_t> recvTopkIdx;
  std::vector<float> recvTopkWeights;
  std::vector<Bf16> combined;         // [numTokens, hidden]
  std::vector<std::int32_t> llCount;  // [local]
  std::vector<std::int32_t> srcInfo;  // [local, T * R]: each row's token index at its source
  // Bytes of staging this implementation holds (its "buffer").
  std::size_t footprintBytes() const {
    return sendBuf_.capacity() + recvBuf_.capacity() +
           4 * (metaOut_.capacity() + metaIn_.capacity());
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int ranks_ = 1;
  MpiShape s_;
  int numScales_ = 0;
  std::size_t rowBytes_ = 0;
  std::vector<std::uint8_t> inRank_;                                    // [numTokens, ranks]
  std::vector<int> sendCounts_, sendDispls_, recvCounts_, recvDispls_;  // rows
  std::vector<std::byte> sendBuf_, recvBuf_;
  std::vector<std::int32_t> metaOut_, metaIn_;
  std::vector<std::int8_t> qRows_;  // int8: each token quantised once [numTokens, hidden]
  std::vector<float> qScales_;      // [numTokens, numScales]
  std::vector<int> pos_;            // normal dispatch: next row per destination
  // Datatypes that send from and receive into the arrays in place (bench/mpi_placement.h).
  MpiPlacement sendPlace_, recvPlace_;
  // Low latency: where each (token, slot) went, and per (local expert, source) ranges.
  std::vector<int> msgDest_, msgPos_;
  std::vector<int> llRecvPerSrc_;             // [local, R] counts
  std::vector<std::int32_t> hdrOut_, hdrIn_;  // [R, local + T * min(K, local)]: counts, ids
  std::vector<int> next_;                     // [R, local]: next message slot
  std::vector<const Bf16*> rows_;             // combine scratch
  std::vector<float> weights_;
  std::vector<std::int64_t> llBegin_;  // [local, R]
};

}  // namespace epcomm::bench
