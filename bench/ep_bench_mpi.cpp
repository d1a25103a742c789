#include "bench/ep_bench_mpi.h"

#include <algorithm>
#include <cstring>

#include "bench/mpi_placement.h"
#include "ep/row_kernels.h"

namespace epcomm::bench {

namespace {

int sizeOf(MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  return size;
}

}  // namespace

MpiEp::MpiEp(MPI_Comm comm, const MpiShape& shape)
    : comm_(comm), s_(shape), sendPlace_(sizeOf(comm)), recvPlace_(sizeOf(comm)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &ranks_);
  numScales_ = ep::numScales(s_.quant, s_.hidden);
  rowBytes_ = ep::isInt8(s_.quant) ? s_.hidden + 4 * static_cast<std::size_t>(numScales_)
                                   : 2 * static_cast<std::size_t>(s_.hidden);
  for (auto* v : {&sendCounts_, &sendDispls_, &recvCounts_, &recvDispls_}) v->resize(ranks_);
}

void MpiEp::dispatch(const Bf16* x, const std::int64_t* topkIdx, const float* topkWeights) {
  const int R = ranks_, N = s_.numTokens, H = s_.hidden, K = s_.numTopk;
  const int local = s_.numExperts / R;
  const bool int8 = ep::isInt8(s_.quant);
  const int group = ep::quantGroupSize(s_.quant, H);
  const std::size_t wire = int8 ? H : 2 * static_cast<std::size_t>(H);  // row bytes
  const int metaWords = 1 + 2 * K + numScales_;
  inRank_.assign(static_cast<std::size_t>(N) * R, 0);
  std::fill(sendCounts_.begin(), sendCounts_.end(), 0);
  for (int t = 0; t < N; ++t) {
    for (int k = 0; k < K; ++k) {
      const std::int64_t e = topkIdx[t * K + k];
      if (e >= 0) inRank_[t * R + e / local] = 1;
    }
    for (int r = 0; r < R; ++r) sendCounts_[r] += inRank_[t * R + r];
  }
  MPI_Alltoall(sendCounts_.data(), 1, MPI_INT, recvCounts_.data(), 1, MPI_INT, comm_);
  int rowsOut = 0, rowsIn = 0;
  for (int r = 0; r < R; ++r) {
    sendDispls_[r] = rowsOut;
    recvDispls_[r] = rowsIn;
    rowsOut += sendCounts_[r];
    rowsIn += recvCounts_[r];
  }
  numRecv = rowsIn;
  metaOut_.resize(static_cast<std::size_t>(rowsOut) * metaWords);
  metaIn_.resize(static_cast<std::size_t>(rowsIn) * metaWords);
  if (int8) {  // each token quantised once; its rows then go from there
    qRows_.resize(static_cast<std::size_t>(N) * H);
    qScales_.resize(static_cast<std::size_t>(N) * numScales_);
  }
  pos_.assign(sendDispls_.begin(), sendDispls_.end());
  sendPlace_.clear();
  recvPlace_.clear();
  for (int t = 0; t < N; ++t) {
    const Bf16* row = x + static_cast<std::size_t>(t) * H;
    const std::int8_t* qrow = int8 ? qRows_.data() + static_cast<std::size_t>(t) * H : nullptr;
    const float* sc = int8 ? qScales_.data() + static_cast<std::size_t>(t) * numScales_ : nullptr;
    if (int8)
      ep::quantizeInt8(row, H, group, qRows_.data() + static_cast<std::size_t>(t) * H,
                       qScales_.data() + static_cast<std::size_t>(t) * numScales_);
    for (int r = 0; r < R; ++r) {
      if (!inRank_[t * R + r]) continue;
      const std::size_t p = pos_[r]++;
      sendPlace_.add(r, int8 ? static_cast<const void*>(qrow) : row, wire);
      std::int32_t* m = metaOut_.data() + p * metaWords;
      m[0] = t;
      for (int k = 0; k < K; ++k) {
        const std::int64_t e = topkIdx[t * K + k];
        const bool isLocal = e >= 0 && e / local == r;
        m[1 + k] = isLocal ? static_cast<std::int32_t>(e - r * local) : -1;
        const float w = isLocal ? topkWeights[t * K + k] : 0.f;
        std::memcpy(&m[1 + K + k], &w, 4);
      }
      if (numScales_ > 0) std::memcpy(m + 1 + 2 * K, sc, 4 * numScales_);
    }
  }
  if (int8) {
    recvXInt8.resize(numRecv * H);
  } else {
    recvX.resize(numRecv * H);
  }
  // One exchange: each peer's rows (straight from x, or the quantised rows) then its
  // metadata, received straight into the row array and the metadata array.
  for (int r = 0; r < R; ++r) {
    sendPlace_.add(r, metaOut_.data() + static_cast<std::size_t>(sendDispls_[r]) * metaWords,
                   sendCounts_[r] * metaWords * sizeof(std::int32_t));
    void* rows = int8 ? static_cast<void*>(recvXInt8.data() + recvDispls_[r] * H)
                      : static_cast<void*>(recvX.data() + recvDispls_[r] * H);
    recvPlace_.add(r, rows, recvCounts_[r] * wire);
    recvPlace_.add(r, metaIn_.data() + static_cast<std::size_t>(recvDispls_[r]) * metaWords,
                   recvCounts_[r] * metaWords * sizeof(std::int32_t));
  }
  alltoallPlaced(sendPlace_, recvPlace_, comm_);
  recvTopkIdx.resize(numRecv * K);
  recvTopkWeights.resize(numRecv * K);
  recvScales.resize(numRecv * numScales_);
  for (std::size_t i = 0; i < numRecv; ++i) {
    const std::int32_t* m = metaIn_.data() + i * metaWords;
    for (int k = 0; k < K; ++k) recvTopkIdx[i * K + k] = m[1 + k];
    std::memcpy(&recvTopkWeights[i * K], m + 1 + K, 4 * K);
    if (numScales_ > 0) std::memcpy(&recvScales[i * numScales_], m + 1 + 2 * K, 4 * numScales_);
  }
  bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    if (r != rank_) bytesSent += sendCounts_[r] * (wire + 4 * static_cast<std::size_t>(metaWords));
  }
}

void MpiEp::combine(const Bf16* x) {
  const int R = ranks_, N = s_.numTokens, H = s_.hidden;
  const std::size_t row = 2 * static_cast<std::size_t>(H);
  std::size_t rowsBack = 0;
  for (int r = 0; r < R; ++r) rowsBack += static_cast<std::size_t>(sendCounts_[r]);
  recvBuf_.resize(rowsBack * row);
  // The rows back straight from x, received per source in the order they went.
  sendPlace_.clear();
  recvPlace_.clear();
  for (int r = 0; r < R; ++r) {
    sendPlace_.add(r, x + static_cast<std::size_t>(recvDispls_[r]) * H, recvCounts_[r] * row);
    recvPlace_.add(r, recvBuf_.data() + static_cast<std::size_t>(sendDispls_[r]) * row,
                   sendCounts_[r] * row);
  }
  alltoallPlaced(sendPlace_, recvPlace_, comm_);
  combined.resize(static_cast<std::size_t>(N) * H);
  std::vector<int> pos(sendDispls_);
  std::vector<const Bf16*> rows(R);
  const auto* back = reinterpret_cast<const Bf16*>(recvBuf_.data());
  for (int t = 0; t < N; ++t) {
    int n = 0;
    for (int r = 0; r < R; ++r) {
      if (inRank_[t * R + r]) rows[n++] = back + static_cast<std::size_t>(pos[r]++) * H;
    }
    ep::sumRows(rows.data(), nullptr, n, H, combined.data() + static_cast<std::size_t>(t) * H);
  }
  bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    if (r != rank_) bytesSent += recvCounts_[r] * row;
  }
}

void MpiEp::llDispatch(const Bf16* x, const std::int64_t* topkIdx) {
  const int R = ranks_, N = s_.numTokens, H = s_.hidden, K = s_.numTopk;
  const int local = s_.numExperts / R, T = s_.maxTokens;
  const bool int8 = ep::isInt8(s_.quant);
  const int group = ep::quantGroupSize(s_.quant, H);
  const std::size_t rowBytes = int8 ? static_cast<std::size_t>(H) : 2 * static_cast<std::size_t>(H);
  // One fixed-size header per destination: counts per local expert, then the token ids of
  // the messages in (expert, token) order, which is also the order the rows go in.
  const int header = local + T * std::min(K, local);
  hdrOut_.assign(static_cast<std::size_t>(R) * header, 0);
  hdrIn_.resize(hdrOut_.size());
  for (int m = 0; m < N * K; ++m) {
    const std::int64_t e = topkIdx[m];
    if (e >= 0) ++hdrOut_[static_cast<std::size_t>(e / local) * header + e % local];
  }
  next_.resize(static_cast<std::size_t>(R) * local);
  for (int r = 0; r < R; ++r) {
    int acc = 0;
    for (int e = 0; e < local; ++e) {
      next_[r * local + e] = acc;
      acc += hdrOut_[static_cast<std::size_t>(r) * header + e];
    }
    sendCounts_[r] = acc;
    sendDispls_[r] = r == 0 ? 0 : sendDispls_[r - 1] + sendCounts_[r - 1];
  }
  msgDest_.assign(static_cast<std::size_t>(N) * K, -1);
  msgPos_.assign(msgDest_.size(), -1);
  for (int t = 0; t < N; ++t) {
    for (int k = 0; k < K; ++k) {
      const std::int64_t e = topkIdx[t * K + k];
      if (e < 0) continue;
      const int r = static_cast<int>(e / local);
      const int p = next_[r * local + e % local]++;
      msgDest_[t * K + k] = r;
      msgPos_[t * K + k] = p;
      hdrOut_[static_cast<std::size_t>(r) * header + local + p] = t;
    }
  }
  MPI_Alltoall(hdrOut_.data(), header, MPI_INT32_T, hdrIn_.data(), header, MPI_INT32_T, comm_);
  if (int8) {  // each token quantised once; its rows then go from there
    qRows_.resize(static_cast<std::size_t>(N) * H);
    qScales_.resize(static_cast<std::size_t>(N) * numScales_);
    for (int t = 0; t < N; ++t) {
      ep::quantizeInt8(x + static_cast<std::size_t>(t) * H, H, group,
                       qRows_.data() + static_cast<std::size_t>(t) * H,
                       qScales_.data() + static_cast<std::size_t>(t) * numScales_);
    }
  }
  const std::size_t rowsPerExpert = static_cast<std::size_t>(T) * R;
  const std::size_t cells = static_cast<std::size_t>(local) * rowsPerExpert;
  if (int8) {
    recvXInt8.resize(cells * H);
    recvScales.resize(cells * numScales_);
  } else {
    recvX.resize(cells * H);
  }
  srcInfo.resize(cells);
  // Rows straight from x (or the quantised rows) to each destination, then (int8) their
  // scales; received straight into the expert-major layout (then the scales), so nothing is
  // packed or unpacked.
  sendPlace_.clear();
  recvPlace_.clear();
  for (int r = 0; r < R; ++r) {
    const std::int32_t* ids = hdrOut_.data() + static_cast<std::size_t>(r) * header + local;
    for (int i = 0; i < sendCounts_[r]; ++i) {
      const std::size_t t = static_cast<std::size_t>(ids[i]);
      sendPlace_.add(r, int8 ? static_cast<const void*>(qRows_.data() + t * H) : x + t * H,
                     rowBytes);
    }
    for (int i = 0; int8 && i < sendCounts_[r]; ++i) {
      sendPlace_.add(r, qScales_.data() + static_cast<std::size_t>(ids[i]) * numScales_,
                     4 * static_cast<std::size_t>(numScales_));
    }
  }
  llCount.assign(local, 0);
  llBegin_.assign(static_cast<std::size_t>(local) * R, 0);
  llRecvPerSrc_.assign(static_cast<std::size_t>(local) * R, 0);
  for (int e = 0; e < local; ++e) {
    int begin = 0;
    for (int src = 0; src < R; ++src) {
      const int c = hdrIn_[static_cast<std::size_t>(src) * header + e];
      llBegin_[e * R + src] = begin;
      llRecvPerSrc_[e * R + src] = c;
      begin += c;
    }
    llCount[e] = begin;
  }
  for (int src = 0; src < R; ++src) {
    const std::int32_t* ids = hdrIn_.data() + static_cast<std::size_t>(src) * header + local;
    int id = 0;
    for (int e = 0; e < local; ++e) {
      const int c = llRecvPerSrc_[e * R + src];
      const std::size_t row = e * rowsPerExpert + llBegin_[e * R + src];
      recvPlace_.add(src,
                     int8 ? static_cast<void*>(recvXInt8.data() + row * H)
                          : static_cast<void*>(recvX.data() + row * H),
                     c * rowBytes);
      for (int i = 0; i < c; ++i) srcInfo[row + i] = ids[id++];
    }
    for (int e = 0; int8 && e < local; ++e) {
      const std::size_t row = e * rowsPerExpert + llBegin_[e * R + src];
      recvPlace_.add(src, recvScales.data() + row * numScales_,
                     llRecvPerSrc_[e * R + src] * 4 * static_cast<std::size_t>(numScales_));
    }
  }
  alltoallPlaced(sendPlace_, recvPlace_, comm_);
  bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    if (r != rank_) bytesSent += sendCounts_[r] * (rowBytes + 4 * numScales_);
  }
}

void MpiEp::llCombine(const Bf16* x, const float* topkWeights) {
  const int R = ranks_, N = s_.numTokens, H = s_.hidden, K = s_.numTopk;
  const int local = s_.numExperts / R;
  const std::size_t row = 2 * static_cast<std::size_t>(H);
  const std::size_t rowsPerExpert = static_cast<std::size_t>(s_.maxTokens) * R;
  // Expert outputs back to each source straight from x, in the order they came; received
  // per destination in message order.
  recvBuf_.resize(static_cast<std::size_t>(sendDispls_[R - 1] + sendCounts_[R - 1]) * row);
  sendPlace_.clear();
  recvPlace_.clear();
  for (int s = 0; s < R; ++s) {
    for (int e = 0; e < local; ++e) {
      sendPlace_.add(s, x + (e * rowsPerExpert + llBegin_[e * R + s]) * H,
                     llRecvPerSrc_[e * R + s] * row);
    }
    recvPlace_.add(s, recvBuf_.data() + static_cast<std::size_t>(sendDispls_[s]) * row,
                   sendCounts_[s] * row);
  }
  alltoallPlaced(sendPlace_, recvPlace_, comm_);
  combined.resize(static_cast<std::size_t>(N) * H);
  rows_.resize(K);
  weights_.resize(K);
  const auto* back = reinterpret_cast<const Bf16*>(recvBuf_.data());
  for (int t = 0; t < N; ++t) {
    int n = 0;
    for (int k = 0; k < K; ++k) {
      const int d = msgDest_[t * K + k];
      if (d < 0) continue;
      rows_[n] = back + static_cast<std::size_t>(sendDispls_[d] + msgPos_[t * K + k]) * H;
      weights_[n++] = topkWeights[t * K + k];
    }
    ep::sumRows(rows_.data(), weights_.data(), n, H,
                combined.data() + static_cast<std::size_t>(t) * H);
  }
  bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    if (r != rank_) {
      for (int e = 0; e < local; ++e) bytesSent += llRecvPerSrc_[e * R + r] * row;
    }
  }
}

}  // namespace epcomm::bench
