#include "bench/ep_bench_mpi.h"

#include <algorithm>
#include <cstring>

#include "ep/row_kernels.h"

namespace epcomm::bench {

MpiEp::MpiEp(MPI_Comm comm, const MpiShape& shape) : comm_(comm), s_(shape) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &ranks_);
  numScales_ = ep::numScales(s_.quant, s_.hidden);
  rowBytes_ = ep::isInt8(s_.quant) ? s_.hidden + 4 * static_cast<std::size_t>(numScales_)
                                   : 2 * static_cast<std::size_t>(s_.hidden);
  for (auto* v : {&sendCounts_, &sendDispls_, &recvCounts_, &recvDispls_, &c1_, &d1_, &c2_, &d2_})
    v->resize(ranks_);
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
  sendBuf_.resize(static_cast<std::size_t>(rowsOut) * wire);
  metaOut_.resize(static_cast<std::size_t>(rowsOut) * metaWords);
  metaIn_.resize(static_cast<std::size_t>(rowsIn) * metaWords);
  std::vector<int> pos(sendDispls_);
  std::vector<std::int8_t> q(int8 ? H : 0);
  std::vector<float> sc(numScales_);
  for (int t = 0; t < N; ++t) {
    const Bf16* row = x + static_cast<std::size_t>(t) * H;
    if (int8) ep::quantizeInt8(row, H, group, q.data(), sc.data());
    for (int r = 0; r < R; ++r) {
      if (!inRank_[t * R + r]) continue;
      const std::size_t p = pos[r]++;
      std::memcpy(sendBuf_.data() + p * wire, int8 ? static_cast<const void*>(q.data()) : row,
                  wire);
      std::int32_t* m = metaOut_.data() + p * metaWords;
      m[0] = t;
      for (int k = 0; k < K; ++k) {
        const std::int64_t e = topkIdx[t * K + k];
        const bool isLocal = e >= 0 && e / local == r;
        m[1 + k] = isLocal ? static_cast<std::int32_t>(e - r * local) : -1;
        const float w = isLocal ? topkWeights[t * K + k] : 0.f;
        std::memcpy(&m[1 + K + k], &w, 4);
      }
      // bf16 rows carry no scales (sc is empty; memcpy from its null data() is UB).
      if (numScales_ > 0) std::memcpy(m + 1 + 2 * K, sc.data(), 4 * numScales_);
    }
  }
  for (int r = 0; r < R; ++r) {
    c1_[r] = static_cast<int>(sendCounts_[r] * wire);
    d1_[r] = static_cast<int>(sendDispls_[r] * wire);
    c2_[r] = static_cast<int>(recvCounts_[r] * wire);
    d2_[r] = static_cast<int>(recvDispls_[r] * wire);
  }
  void* recvRows;
  if (int8) {
    recvXInt8.resize(numRecv * H);
    recvRows = recvXInt8.data();
  } else {
    recvX.resize(numRecv * H);
    recvRows = recvX.data();
  }
  MPI_Alltoallv(sendBuf_.data(), c1_.data(), d1_.data(), MPI_BYTE, recvRows, c2_.data(), d2_.data(),
                MPI_BYTE, comm_);
  for (int r = 0; r < R; ++r) {
    c1_[r] = sendCounts_[r] * metaWords;
    d1_[r] = sendDispls_[r] * metaWords;
    c2_[r] = recvCounts_[r] * metaWords;
    d2_[r] = recvDispls_[r] * metaWords;
  }
  MPI_Alltoallv(metaOut_.data(), c1_.data(), d1_.data(), MPI_INT32_T, metaIn_.data(), c2_.data(),
                d2_.data(), MPI_INT32_T, comm_);
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
  for (int r = 0; r < R; ++r) {
    c1_[r] = static_cast<int>(recvCounts_[r] * row);
    d1_[r] = static_cast<int>(recvDispls_[r] * row);
    c2_[r] = static_cast<int>(sendCounts_[r] * row);
    d2_[r] = static_cast<int>(sendDispls_[r] * row);
  }
  int rowsBack = 0;
  for (int r = 0; r < R; ++r) rowsBack += sendCounts_[r];
  recvBuf_.resize(static_cast<std::size_t>(rowsBack) * row);
  MPI_Alltoallv(x, c1_.data(), d1_.data(), MPI_BYTE, recvBuf_.data(), c2_.data(), d2_.data(),
                MPI_BYTE, comm_);
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
    if (r != rank_) bytesSent += c1_[r];
  }
}

void MpiEp::llDispatch(const Bf16* x, const std::int64_t* topkIdx) {
  const int R = ranks_, N = s_.numTokens, H = s_.hidden, K = s_.numTopk;
  const int local = s_.numExperts / R, T = s_.maxTokens;
  const bool int8 = ep::isInt8(s_.quant);
  const int group = ep::quantGroupSize(s_.quant, H);
  const std::size_t msg = rowBytes_ + 4;
  std::vector<int> cnt(static_cast<std::size_t>(R) * local, 0), cntIn(cnt.size());
  for (int m = 0; m < N * K; ++m) {
    if (topkIdx[m] >= 0) ++cnt[topkIdx[m]];
  }
  MPI_Alltoall(cnt.data(), local, MPI_INT, cntIn.data(), local, MPI_INT, comm_);
  std::vector<int> next(cnt.size());
  int out = 0, in = 0;
  for (int r = 0; r < R; ++r) {
    sendDispls_[r] = out;
    recvDispls_[r] = in;
    int so = 0, si = 0;
    for (int e = 0; e < local; ++e) {
      next[r * local + e] = out + so;
      so += cnt[r * local + e];
      si += cntIn[r * local + e];
    }
    sendCounts_[r] = so;
    recvCounts_[r] = si;
    out += so;
    in += si;
  }
  sendBuf_.resize(static_cast<std::size_t>(out) * msg);
  recvBuf_.resize(static_cast<std::size_t>(in) * msg);
  msgDest_.assign(static_cast<std::size_t>(N) * K, -1);
  msgPos_.assign(msgDest_.size(), -1);
  std::vector<std::byte> qrow(int8 ? rowBytes_ : 0);
  for (int t = 0; t < N; ++t) {
    const Bf16* row = x + static_cast<std::size_t>(t) * H;
    if (int8) {
      ep::quantizeInt8(row, H, group, reinterpret_cast<std::int8_t*>(qrow.data()),
                       reinterpret_cast<float*>(qrow.data() + H));
    }
    for (int k = 0; k < K; ++k) {
      const std::int64_t e = topkIdx[t * K + k];
      if (e < 0) continue;
      const int p = next[e]++;
      msgDest_[t * K + k] = static_cast<int>(e / local);
      msgPos_[t * K + k] = p - sendDispls_[e / local];
      std::byte* m = sendBuf_.data() + static_cast<std::size_t>(p) * msg;
      std::memcpy(m, int8 ? static_cast<const void*>(qrow.data()) : row, rowBytes_);
      std::memcpy(m + rowBytes_, &t, 4);
    }
  }
  for (int r = 0; r < R; ++r) {
    c1_[r] = static_cast<int>(sendCounts_[r] * msg);
    d1_[r] = static_cast<int>(sendDispls_[r] * msg);
    c2_[r] = static_cast<int>(recvCounts_[r] * msg);
    d2_[r] = static_cast<int>(recvDispls_[r] * msg);
  }
  MPI_Alltoallv(sendBuf_.data(), c1_.data(), d1_.data(), MPI_BYTE, recvBuf_.data(), c2_.data(),
                d2_.data(), MPI_BYTE, comm_);
  const std::size_t rowsPerExpert = static_cast<std::size_t>(T) * R;
  const std::size_t cells = static_cast<std::size_t>(local) * rowsPerExpert;
  if (int8) {
    recvXInt8.resize(cells * H);
    recvScales.resize(cells * numScales_);
  } else {
    recvX.resize(cells * H);
  }
  llCount.assign(local, 0);
  llBegin_.assign(static_cast<std::size_t>(local) * R, 0);
  llRecvPerSrc_.assign(static_cast<std::size_t>(local) * R, 0);
  std::vector<int> cursor(recvDispls_);
  for (int e = 0; e < local; ++e) {
    int begin = 0;
    for (int s = 0; s < R; ++s) {
      const int c = cntIn[s * local + e];
      const std::byte* m = recvBuf_.data() + static_cast<std::size_t>(cursor[s]) * msg;
      for (int i = 0; i < c; ++i, m += msg) {
        const std::size_t row = e * rowsPerExpert + begin + i;
        if (int8) {
          std::memcpy(&recvXInt8[row * H], m, H);
          std::memcpy(&recvScales[row * numScales_], m + H, 4 * numScales_);
        } else {
          std::memcpy(&recvX[row * H], m, rowBytes_);
        }
      }
      cursor[s] += c;
      llBegin_[e * R + s] = begin;
      llRecvPerSrc_[e * R + s] = c;
      begin += c;
    }
    llCount[e] = begin;
  }
  bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    if (r != rank_) bytesSent += c1_[r];
  }
}

void MpiEp::llCombine(const Bf16* x, const float* topkWeights) {
  const int R = ranks_, N = s_.numTokens, H = s_.hidden, K = s_.numTopk;
  const int local = s_.numExperts / R;
  const std::size_t row = 2 * static_cast<std::size_t>(H);
  const std::size_t rowsPerExpert = static_cast<std::size_t>(s_.maxTokens) * R;
  // Rows back to each source: le-major, as they came.
  sendBuf_.resize(static_cast<std::size_t>(numRecvLl()) * row);
  std::size_t off = 0;
  for (int s = 0; s < R; ++s) {
    d1_[s] = static_cast<int>(off);
    for (int e = 0; e < local; ++e) {
      const std::size_t c = llRecvPerSrc_[e * R + s];
      std::memcpy(sendBuf_.data() + off, x + (e * rowsPerExpert + llBegin_[e * R + s]) * H,
                  c * row);
      off += c * row;
    }
    c1_[s] = static_cast<int>(off - d1_[s]);
    c2_[s] = static_cast<int>(sendCounts_[s] * row);
    d2_[s] = static_cast<int>(sendDispls_[s] * row);
  }
  recvBuf_.resize(static_cast<std::size_t>(sendDispls_[R - 1] + sendCounts_[R - 1]) * row);
  MPI_Alltoallv(sendBuf_.data(), c1_.data(), d1_.data(), MPI_BYTE, recvBuf_.data(), c2_.data(),
                d2_.data(), MPI_BYTE, comm_);
  combined.resize(static_cast<std::size_t>(N) * H);
  std::vector<const Bf16*> rows(K);
  std::vector<float> w(K);
  const auto* back = reinterpret_cast<const Bf16*>(recvBuf_.data());
  for (int t = 0; t < N; ++t) {
    int n = 0;
    for (int k = 0; k < K; ++k) {
      const int d = msgDest_[t * K + k];
      if (d < 0) continue;
      rows[n] = back + static_cast<std::size_t>(sendDispls_[d] + msgPos_[t * K + k]) * H;
      w[n++] = topkWeights[t * K + k];
    }
    ep::sumRows(rows.data(), w.data(), n, H, combined.data() + static_cast<std::size_t>(t) * H);
  }
  bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    if (r != rank_) bytesSent += c1_[r];
  }
}

}  // namespace epcomm::bench
