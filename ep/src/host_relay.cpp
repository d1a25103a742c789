#include "ep/src/host_relay.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "ep/row_kernels.h"
#include "ep/src/normal_meta.h"
#include "ep/src/normal_plan.h"

namespace epcomm::ep {
namespace {

// Local ranks a token goes to on one host, as bits (hosts of at most 31 ranks).
constexpr int kMaxLocal = 31;

template <typename T>
T* grow(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Exclusive prefix sums of `counts` scaled by `unit`, as all-to-all-v counts / displacements.
// Returns the sum of `counts`.
std::size_t layoutOf(const std::vector<std::int64_t>& counts, std::size_t unit,
                     std::vector<std::size_t>& sizes, std::vector<std::size_t>& displs) {
  sizes.resize(counts.size());
  displs.resize(counts.size());
  std::size_t at = 0, total = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    sizes[i] = static_cast<std::size_t>(counts[i]) * unit;
    displs[i] = at;
    at += sizes[i];
    total += static_cast<std::size_t>(counts[i]);
  }
  return total;
}

}  // namespace

std::unique_ptr<HostRelay> HostRelay::create(Communicator& comm) {
  if (comm.numHosts() <= 1) return nullptr;
  // Every rank learns every rank's (host, local rank): the same verdict everywhere.
  const std::int32_t mine[2] = {comm.host(), comm.localRank()};
  std::vector<std::int32_t> all(2 * static_cast<std::size_t>(comm.size()));
  comm.allGather(mine, all.data(), 2, DataType::kI32);
  const int hosts = comm.numHosts();
  std::vector<int> perHost(static_cast<std::size_t>(hosts), 0);
  for (int r = 0; r < comm.size(); ++r) ++perHost[static_cast<std::size_t>(all[2 * r])];
  const int local = perHost[0];
  for (const int n : perHost) {
    if (n != local || local > kMaxLocal) return nullptr;
  }
  std::vector<int> members(static_cast<std::size_t>(hosts * local));
  for (int r = 0; r < comm.size(); ++r) {
    members[static_cast<std::size_t>(all[2 * r] * local + all[2 * r + 1])] = r;
  }
  return std::unique_ptr<HostRelay>(new HostRelay(comm, std::move(members), hosts, local));
}

HostRelay::HostRelay(Communicator& comm, std::vector<int> members, int hosts, int local)
    : comm_(comm),
      members_(std::move(members)),
      hosts_(hosts),
      local_(local),
      myHost_(comm.host()),
      myLocal_(comm.localRank()) {
  // Ranks of this host by local index (key: rank); ranks with this local index by host.
  hostComm_ = comm.split(myHost_, comm.rank());
  railComm_ = comm.split(myLocal_, myHost_);
}

std::vector<std::int64_t> HostRelay::maskTokens(const DispatchHandle& h) {
  const int R = comm_.size(), me = comm_.rank();
  const auto H = static_cast<std::size_t>(hosts_);
  masks_.assign(static_cast<std::size_t>(h.numTokens) * H, 0);
  std::vector<std::int64_t> perHost(H, 0);
  for (int t = 0; t < h.numTokens; ++t) {
    const std::uint8_t* inRank = h.isTokenInRank.data() + static_cast<std::size_t>(t) * R;
    std::int32_t* mask = masks_.data() + static_cast<std::size_t>(t) * H;
    for (int hh = 0; hh < hosts_; ++hh) {
      for (int l = 0; l < local_; ++l) {
        const int r = member(hh, l);
        if (r != me && inRank[r]) mask[hh] |= std::int32_t{1} << l;
      }
      perHost[hh] += mask[hh] != 0 ? 1 : 0;
    }
  }
  return perHost;
}

std::vector<std::int64_t> HostRelay::rowsBySourceIndex(const DispatchHandle& h) const {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(local_), 0);
  for (int l = 0; l < local_; ++l) {
    for (int hs = 0; hs < hosts_; ++hs) {
      const int src = member(hs, l);
      if (src != comm_.rank()) rows[l] += h.recvCounts[src];
    }
  }
  return rows;
}

std::vector<std::int64_t> HostRelay::recordsPerLocal(const DispatchHandle& h) const {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(local_), 0);
  for (std::size_t i = 1; i < h.relayRecords.size(); i += 2) {
    for (int l = 0; l < local_; ++l) rows[l] += (h.relayRecords[i] >> l) & 1;
  }
  return rows;
}

void HostRelay::dispatch(const DispatchInputs& in, DispatchOutputs& out, const NormalPlan& plan,
                         Quant quant, int group) {
  // A failure on a sub-communicator names the user's call, and whose numbering its ranks use.
  const Communicator::CallScope inHost(
      *hostComm_, "ep::dispatch (its relay inside the host; ranks by local index)");
  const Communicator::CallScope amongHosts(*railComm_,
                                           "ep::dispatch (its relay among hosts; ranks by host)");
  DispatchHandle& h = out.handle;
  const int R = comm_.size(), me = comm_.rank();
  const int H = hosts_, L = local_;
  const int hidden = in.hidden, numTokens = in.numTokens;
  const int numTopk = in.handle ? 0 : in.numTopk;
  const int numLocal = h.numExperts / R;
  const int numScales = isInt8(quant) ? hidden / group : 0;
  const bool bf16 = !isInt8(quant);
  const std::size_t rowBytes = plan.rowBytes, metaWords = plan.metaWords;
  // A token's record on the rail: [t, local-rank mask, topk ids, weight bits, scales].
  const std::size_t recWords = 2 + 2 * static_cast<std::size_t>(numTopk) + numScales;
  std::byte* const recvData = bf16 ? reinterpret_cast<std::byte*>(out.recvX.data())
                                   : reinterpret_cast<std::byte*>(out.recvXInt8.data());
  // Tokens per host (this host's: the ones this rank forwards itself), then the staging.
  const std::vector<std::int64_t> perHost = maskTokens(h);
  std::vector<std::size_t> rowSizes, rowDispls, recSizes, recDispls;
  const std::size_t total = layoutOf(perHost, rowBytes, rowSizes, rowDispls);
  layoutOf(perHost, recWords, recSizes, recDispls);
  std::byte* rowsOut = grow(railRowsOut_, total * rowBytes);
  std::int32_t* recOut = grow(railRecOut_, total * recWords);

  std::vector<std::int8_t> qRow(bf16 ? 0 : static_cast<std::size_t>(hidden));
  std::vector<float> qScales(static_cast<std::size_t>(numScales));
  std::vector<std::int32_t> selfMeta(metaWords);
  std::vector<std::size_t> pos(static_cast<std::size_t>(H));
  for (int hh = 0; hh < H; ++hh) pos[hh] = rowDispls[hh] / std::max<std::size_t>(rowBytes, 1);
  std::size_t selfRow = static_cast<std::size_t>(h.rankPrefix[me]);
  for (int t = 0; t < numTokens; ++t) {
    const std::uint8_t* inRank = h.isTokenInRank.data() + static_cast<std::size_t>(t) * R;
    const std::int32_t* masks = masks_.data() + static_cast<std::size_t>(t) * H;
    bool any = inRank[me] != 0;
    for (int hh = 0; hh < H && !any; ++hh) any = masks[hh] != 0;
    if (!any) continue;
    const void* row = nullptr;
    if (in.xInt8) {
      row = in.xInt8 + static_cast<std::size_t>(t) * hidden;
      for (int g = 0; g < numScales; ++g) {
        qScales[g] = in.xScales[t * in.scalesTokenStride + g * in.scalesGroupStride];
      }
    } else if (bf16) {
      row = in.x + static_cast<std::size_t>(t) * hidden;
    } else {
      quantizeInt8(in.x + static_cast<std::size_t>(t) * hidden, hidden, group, qRow.data(),
                   qScales.data());
      row = qRow.data();
    }
    if (inRank[me]) {
      std::memcpy(recvData + selfRow * rowBytes, row, rowBytes);
      if (metaWords > 0) {
        writeMeta(selfMeta.data(), in, t, me, numLocal, numTopk, qScales.data(), numScales);
        readMeta(selfMeta.data(), out, selfRow, numTopk, numScales);
      }
      ++selfRow;
    }
    for (int hh = 0; hh < H; ++hh) {
      if (masks[hh] == 0) continue;
      const std::size_t p = pos[hh]++;
      std::memcpy(rowsOut + p * rowBytes, row, rowBytes);
      std::int32_t* rec = recOut + p * recWords;
      rec[0] = t;
      rec[1] = masks[hh];
      for (int k = 0; k < numTopk; ++k) {
        const std::size_t at = static_cast<std::size_t>(t) * numTopk + k;
        rec[2 + k] = static_cast<std::int32_t>(in.topkIdx[at]);
        const float w = in.topkWeights ? in.topkWeights[at] : 0.f;
        std::memcpy(&rec[2 + numTopk + k], &w, sizeof w);
      }
      if (numScales > 0) std::memcpy(rec + 2 + 2 * numTopk, qScales.data(), 4 * numScales);
    }
  }

  // The rail: each remote host's rows and records to the rail peer there (rank = host).
  std::vector<std::int64_t> railSend = perHost, railRecv(static_cast<std::size_t>(H));
  railSend[myHost_] = 0;
  railComm_->allToAll(railSend.data(), railRecv.data(), 1, DataType::kI64);
  std::vector<std::size_t> inRowSizes, inRowDispls, inRecSizes, inRecDispls;
  const std::size_t totalIn = layoutOf(railRecv, rowBytes, inRowSizes, inRowDispls);
  layoutOf(railRecv, recWords, inRecSizes, inRecDispls);
  std::vector<std::size_t> sendRowSizes = rowSizes, sendRecSizes = recSizes;
  sendRowSizes[myHost_] = 0;
  sendRecSizes[myHost_] = 0;
  std::byte* rowsIn = grow(railRowsIn_, totalIn * rowBytes);
  std::int32_t* recIn = grow(railRecIn_, totalIn * recWords);
  railComm_->allToAllV(rowsOut, sendRowSizes.data(), rowDispls.data(), rowsIn, inRowSizes.data(),
                       inRowDispls.data(), DataType::kU8);
  railComm_->allToAllV(recOut, sendRecSizes.data(), recDispls.data(), recIn, inRecSizes.data(),
                       inRecDispls.data(), DataType::kI32);
  for (int hh = 0; hh < H; ++hh) out.bytesSent += sendRowSizes[hh] + 4 * sendRecSizes[hh];

  // What this rank forwards, per source host (its own tokens for its own host included).
  const auto sourceRows = [&](int hs) {
    return hs == myHost_ ? rowsOut + rowDispls[hs] : rowsIn + inRowDispls[hs];
  };
  const auto sourceRecs = [&](int hs) {
    return hs == myHost_ ? recOut + recDispls[hs] : recIn + inRecDispls[hs];
  };
  const auto sourceCount = [&](int hs) {
    return static_cast<std::size_t>(hs == myHost_ ? perHost[hs] : railRecv[hs]);
  };
  h.relayCounts.assign(static_cast<std::size_t>(H), 0);
  h.relayRecords.clear();
  h.relayRecords.reserve(2 * (perHost[myHost_] + totalIn));
  for (int hs = 0; hs < H; ++hs) {
    const std::int32_t* recs = sourceRecs(hs);
    h.relayCounts[hs] = static_cast<std::int64_t>(sourceCount(hs));
    for (std::size_t i = 0; i < sourceCount(hs); ++i) {
      h.relayRecords.push_back(recs[i * recWords]);
      h.relayRecords.push_back(recs[i * recWords + 1]);
    }
  }

  // In host: to each local rank, its rows by source host, each source's in token order.
  const std::vector<std::int64_t> toLocal = recordsPerLocal(h);
  std::vector<std::size_t> hRowSizes, hRowDispls, hMetaSizes, hMetaDispls;
  const std::size_t fwdTotal = layoutOf(toLocal, rowBytes, hRowSizes, hRowDispls);
  layoutOf(toLocal, metaWords, hMetaSizes, hMetaDispls);
  std::vector<float> scales(static_cast<std::size_t>(numScales));
  std::byte* fwdRows = grow(hostRowsOut_, fwdTotal * rowBytes);
  std::int32_t* fwdMeta = grow(hostMetaOut_, fwdTotal * metaWords);
  for (int l = 0; l < L; ++l) {
    std::size_t p = hRowDispls[l] / std::max<std::size_t>(rowBytes, 1);
    const int dest = member(myHost_, l);
    for (int hs = 0; hs < H; ++hs) {
      const std::byte* rows = sourceRows(hs);
      const std::int32_t* recs = sourceRecs(hs);
      for (std::size_t i = 0; i < sourceCount(hs); ++i) {
        const std::int32_t* rec = recs + i * recWords;
        if (((rec[1] >> l) & 1) == 0) continue;
        std::memcpy(fwdRows + p * rowBytes, rows + i * rowBytes, rowBytes);
        if (metaWords > 0) {
          if (numScales > 0) std::memcpy(scales.data(), rec + 2 + 2 * numTopk, 4 * scales.size());
          writeMetaOf(fwdMeta + p * metaWords, rec[0], rec + 2, rec + 2 + numTopk, dest, numLocal,
                      numTopk, scales.data(), numScales);
        }
        ++p;
      }
    }
  }
  // What arrives from local rank l: the rows of the sources with local index l (each host's,
  // in host order), this rank's own rows excepted (they were copied above).
  const std::vector<std::int64_t> fromLocal = rowsBySourceIndex(h);
  std::vector<std::size_t> iRowSizes, iRowDispls, iMetaSizes, iMetaDispls;
  const std::size_t hostIn = layoutOf(fromLocal, rowBytes, iRowSizes, iRowDispls);
  layoutOf(fromLocal, metaWords, iMetaSizes, iMetaDispls);
  std::byte* hRowsIn = grow(hostRowsIn_, hostIn * rowBytes);
  std::int32_t* hMetaIn = grow(hostMetaIn_, hostIn * metaWords);
  hostComm_->allToAllV(fwdRows, hRowSizes.data(), hRowDispls.data(), hRowsIn, iRowSizes.data(),
                       iRowDispls.data(), DataType::kU8);
  if (metaWords > 0) {
    hostComm_->allToAllV(fwdMeta, hMetaSizes.data(), hMetaDispls.data(), hMetaIn, iMetaSizes.data(),
                         iMetaDispls.data(), DataType::kI32);
  }
  for (int l = 0; l < L; ++l) {
    if (l != myLocal_) out.bytesSent += hRowSizes[l] + 4 * hMetaSizes[l];
  }

  // Each row where the flat path puts it: source s's rows from rankPrefix[s], in order.
  for (int l = 0; l < L; ++l) {
    std::size_t i = iRowDispls[l] / std::max<std::size_t>(rowBytes, 1);
    for (int hs = 0; hs < H; ++hs) {
      const int src = member(hs, l);
      if (src == me) continue;
      const auto n = static_cast<std::size_t>(h.recvCounts[src]);
      const auto first = static_cast<std::size_t>(h.rankPrefix[src]);
      if (n > 0) std::memcpy(recvData + first * rowBytes, hRowsIn + i * rowBytes, n * rowBytes);
      for (std::size_t k = 0; k < n && metaWords > 0; ++k) {
        readMeta(hMetaIn + (i + k) * metaWords, out, first + k, numTopk, numScales);
      }
      i += n;
    }
  }
}

void HostRelay::combine(const CombineInputs& in, CombineOutputs& out, int numTopk) {
  const Communicator::CallScope inHost(
      *hostComm_, "ep::combine (its relay inside the host; ranks by local index)");
  const Communicator::CallScope amongHosts(*railComm_,
                                           "ep::combine (its relay among hosts; ranks by host)");
  const DispatchHandle& h = *in.handle;
  const int R = comm_.size(), me = comm_.rank();
  const int H = hosts_, L = local_;
  const int hidden = h.hidden, numTokens = h.numTokens;
  const auto hid = static_cast<std::size_t>(hidden);
  const auto K = static_cast<std::size_t>(numTopk);

  // Rows back to the rank that forwarded them: for local rank l, the rows of the sources
  // with local index l, host by host (dispatch's in-host order reversed).
  const std::vector<std::int64_t> toLocal = rowsBySourceIndex(h);
  std::vector<std::size_t> rowSizes, rowDispls, wSizes, wDispls;
  const std::size_t back = layoutOf(toLocal, hid, rowSizes, rowDispls);
  layoutOf(toLocal, K, wSizes, wDispls);
  auto* rowsOut = reinterpret_cast<Bf16*>(grow(hostRowsOut_, back * hid * sizeof(Bf16)));
  float* wOut = grow(hostWOut_, back * K);
  for (int l = 0; l < L; ++l) {
    std::size_t p = rowDispls[l] / std::max<std::size_t>(hid, 1);
    for (int hs = 0; hs < H; ++hs) {
      const int src = member(hs, l);
      if (src == me) continue;
      const auto n = static_cast<std::size_t>(h.recvCounts[src]);
      const auto first = static_cast<std::size_t>(h.rankPrefix[src]);
      if (n > 0) std::memcpy(rowsOut + p * hid, in.x + first * hid, n * hid * sizeof(Bf16));
      if (n > 0 && K > 0) std::memcpy(wOut + p * K, in.topkWeights + first * K, n * K * 4);
      p += n;
    }
  }
  // What comes back from local rank l: one row per forwarded record naming l.
  const std::vector<std::int64_t> fromLocal = recordsPerLocal(h);
  std::vector<std::size_t> iRowSizes, iRowDispls, iWSizes, iWDispls;
  const std::size_t hostIn = layoutOf(fromLocal, hid, iRowSizes, iRowDispls);
  layoutOf(fromLocal, K, iWSizes, iWDispls);
  auto* rowsIn = reinterpret_cast<Bf16*>(grow(hostRowsIn_, hostIn * hid * sizeof(Bf16)));
  float* wIn = grow(hostWIn_, hostIn * K);
  hostComm_->allToAllV(rowsOut, rowSizes.data(), rowDispls.data(), rowsIn, iRowSizes.data(),
                       iRowDispls.data(), DataType::kBf16);
  if (K > 0) {
    hostComm_->allToAllV(wOut, wSizes.data(), wDispls.data(), wIn, iWSizes.data(), iWDispls.data(),
                         DataType::kF32);
  }
  for (int l = 0; l < L; ++l) {
    if (l != myLocal_) out.bytesSent += rowSizes[l] * sizeof(Bf16) + wSizes[l] * 4;
  }

  // Each forwarded token's rows of this host summed once (weighted where asked): for remote
  // sources a row (and its weight sums) to send back over the rail, for this rank's own
  // tokens a partial kept here.
  std::vector<const Bf16*> next(static_cast<std::size_t>(L));
  std::vector<const float*> nextW(static_cast<std::size_t>(L));
  for (int l = 0; l < L; ++l) {
    next[l] = rowsIn + iRowDispls[l];
    nextW[l] = wIn + iWDispls[l];
  }
  std::vector<std::size_t> railSizes, railDispls, railWSizes, railWDispls;
  std::vector<std::int64_t> railSend = h.relayCounts;
  railSend[myHost_] = 0;
  const std::size_t railOut = layoutOf(railSend, hid, railSizes, railDispls);
  layoutOf(railSend, K, railWSizes, railWDispls);
  auto* partOut = reinterpret_cast<Bf16*>(grow(railRowsOut_, railOut * hid * sizeof(Bf16)));
  float* partWOut = grow(railWOut_, railOut * K);
  // This rank's own tokens: partial row and weights of this host's other ranks.
  const auto ownCount = static_cast<std::size_t>(h.relayCounts[myHost_]);
  Bf16* const ownRows = grow(ownRows_, ownCount * hid);
  float* const ownW = grow(ownW_, ownCount * K);
  std::vector<const Bf16*> rows(static_cast<std::size_t>(L + H + 1));
  std::vector<float> scale(static_cast<std::size_t>(L + H + 1));
  std::size_t record = 0;
  for (int hs = 0; hs < H; ++hs) {
    const auto count = static_cast<std::size_t>(h.relayCounts[hs]);
    for (std::size_t i = 0; i < count; ++i, ++record) {
      const std::int32_t mask = h.relayRecords[2 * record + 1];
      Bf16* dst = hs == myHost_ ? ownRows + i * hid : partOut + railDispls[hs] + i * hid;
      float* dstW = hs == myHost_ ? ownW + i * K : partWOut + railWDispls[hs] + i * K;
      std::fill(dstW, dstW + K, 0.f);
      int n = 0;
      for (int l = 0; l < L; ++l) {
        if (((mask >> l) & 1) == 0) continue;
        rows[n] = next[l];
        next[l] += hid;
        float sum = 0.f;
        for (std::size_t k = 0; k < K; ++k) {
          dstW[k] += nextW[l][k];
          sum += nextW[l][k];
        }
        nextW[l] += K;
        scale[n] = sum;
        ++n;
      }
      sumRows(rows.data(), in.weighted ? scale.data() : nullptr, n, hidden, dst);
    }
  }

  // Over the rail: one row per token and host back to the source (none from its own host).
  std::vector<std::int64_t> perHost = maskTokens(h);
  perHost[myHost_] = 0;
  std::vector<std::size_t> inSizes, inDispls, inWSizes, inWDispls;
  const std::size_t railIn = layoutOf(perHost, hid, inSizes, inDispls);
  layoutOf(perHost, K, inWSizes, inWDispls);
  auto* partIn = reinterpret_cast<Bf16*>(grow(railRowsIn_, railIn * hid * sizeof(Bf16)));
  float* partWIn = grow(railWIn_, railIn * K);
  railComm_->allToAllV(partOut, railSizes.data(), railDispls.data(), partIn, inSizes.data(),
                       inDispls.data(), DataType::kBf16);
  if (K > 0) {
    railComm_->allToAllV(partWOut, railWSizes.data(), railWDispls.data(), partWIn, inWSizes.data(),
                         inWDispls.data(), DataType::kF32);
  }
  for (int hh = 0; hh < H; ++hh) out.bytesSent += railSizes[hh] * sizeof(Bf16) + railWSizes[hh] * 4;

  // At the source: its own row, its host's partial, each remote host's partial, in that order.
  const Bf16* self = in.x + static_cast<std::size_t>(h.rankPrefix[me]) * hid;
  const float* selfW =
      K > 0 ? in.topkWeights + static_cast<std::size_t>(h.rankPrefix[me]) * K : nullptr;
  std::vector<const Bf16*> nextPart(static_cast<std::size_t>(H));
  std::vector<const float*> nextPartW(static_cast<std::size_t>(H));
  for (int hh = 0; hh < H; ++hh) {
    nextPart[hh] = partIn + inDispls[hh];
    nextPartW[hh] = partWIn + inWDispls[hh];
  }
  std::size_t own = 0;
  for (int t = 0; t < numTokens; ++t) {
    const std::uint8_t* inRank = h.isTokenInRank.data() + static_cast<std::size_t>(t) * R;
    float* cw = K > 0 ? out.combinedTopkWeights.data() + static_cast<std::size_t>(t) * K : nullptr;
    if (cw) std::fill(cw, cw + K, 0.f);
    const auto addWeights = [&](const float* w) {
      for (std::size_t k = 0; k < K; ++k) cw[k] += w[k];
    };
    int n = 0;
    if (inRank[me]) {
      float sum = 0.f;
      for (std::size_t k = 0; k < K; ++k) sum += selfW[k];
      if (K > 0) addWeights(selfW);
      rows[n] = self;
      scale[n++] = sum;
      self += hid;
      if (selfW) selfW += K;
    }
    const std::int32_t* masks = masks_.data() + static_cast<std::size_t>(t) * H;
    for (int hh = 0; hh < H; ++hh) {
      if (masks[hh] == 0) continue;
      if (hh == myHost_) {
        rows[n] = ownRows + own * hid;
        if (K > 0) addWeights(ownW + own * K);
        ++own;
      } else {
        rows[n] = nextPart[hh];
        nextPart[hh] += hid;
        if (K > 0) addWeights(nextPartW[hh]);
        nextPartW[hh] += K;
      }
      scale[n++] = 1.f;  // partials are weighted already
    }
    sumRows(rows.data(), in.weighted ? scale.data() : nullptr, n, hidden,
            out.combinedX.data() + static_cast<std::size_t>(t) * hid);
  }
}

}  // namespace epcomm::ep
