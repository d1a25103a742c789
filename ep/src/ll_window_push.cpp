// Push dispatch over the low-latency window (any window; layout and signals in ll_window.h).
// Dispatch of sequence q into slot k: each rank puts its count matrix [dst][E_local] into
// every peer's counts[k] and signals counts(k, me) = q; it then waits for the counts of the
// lower ranks only (rank 0 waits for nobody): rows of source s for local expert e at rank d
// start at row e * T*R + sum_{s' < s} counts[s'][d][e] of the packed layout. Send: put every
// row (own rows: memcpy), the meta block, signal dispatch(k, me) = q at every peer; return.
// Receive (now or in the hook): wait dispatch(k, s) >= q for every peer s (its counts came
// before), then derive recvCount / layoutRange from the counts and scatter srcInfo from the
// meta blocks; int8 with dequantize writes bf16 rows into the slot's arena. The payload is
// never copied at the receiver.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ep/src/ll_window.h"
#include "ep/src/normal_plan.h"

namespace epcomm::ep {
namespace {

std::int32_t countOf(const LlWindow& w, const LlSlot& slot, int src, int dst, int e) {
  return slot.counts[(static_cast<std::size_t>(src) * w.R + dst) * w.shape.numLocal() + e];
}

}  // namespace

std::size_t pushDispatchSend(LlWindow& w, int index, LlSlot& slot,
                             const LowLatencyDispatchInputs& in) {
  const LlShape& sh = w.shape;
  const LlWindowRegion& reg = w.regions[index];
  const int local = sh.numLocal(), N = in.numTokens, H = in.hidden, K = in.numTopk;
  const std::size_t TR = sh.rowsPerExpert(), cells = static_cast<std::size_t>(w.R) * local;
  // My count matrix to every rank; then the lower ranks' (they place rows before mine).
  auto* counts = reinterpret_cast<std::int32_t*>(w.base + reg.counts);
  std::int32_t* mine = counts + w.me * cells;
  std::fill(mine, mine + cells, 0);
  for (std::size_t m = 0; m < static_cast<std::size_t>(N) * K; ++m) {
    if (in.topkIdx[m] >= 0) ++mine[in.topkIdx[m]];  // expert e = dest * local + le
  }
  for (int d = 0; d < w.R; ++d) {
    if (d == w.me) continue;
    w.window->put(d, reg.counts + w.me * cells * sizeof(std::int32_t), mine,
                  cells * sizeof(std::int32_t));
    w.window->signal(d, w.countsSignal(index, w.me), slot.sequence, SignalOp::kSet);
  }
  for (int s = 0; s < w.me; ++s) w.window->waitSignal(w.countsSignal(index, s), slot.sequence);
  slot.counts = counts;
  const bool int8 = isInt8(in.quant);
  const int group = quantGroupSize(in.quant, H), numSc = int8 ? H / group : 0;
  const std::size_t rows = static_cast<std::size_t>(local) * TR;
  w.setOutputs(index, slot, int8);

  // next[d][e]: the next row of mine at d for local expert e; metaAt[d][e]: where its
  // message id goes in my meta block for d.
  std::vector<std::size_t> next(cells), metaAt(cells), metaTotal(w.R, 0);
  for (int d = 0; d < w.R; ++d) {
    for (int e = 0; e < local; ++e) {
      std::size_t begin = 0;
      for (int s = 0; s < w.me; ++s) begin += countOf(w, slot, s, d, e);
      next[d * local + e] = e * TR + begin;
      metaAt[d * local + e] = metaTotal[d];
      metaTotal[d] += countOf(w, slot, w.me, d, e);
    }
  }
  std::vector<std::int32_t> meta(static_cast<std::size_t>(w.R) * sh.maxMessagesPerPeer());
  std::vector<std::int8_t> q(int8 ? H : 0);
  std::vector<float> scales(numSc);
  const std::size_t rowBytes = int8 ? H : 2 * static_cast<std::size_t>(H);
  const std::size_t scaleBytes = sizeof(float) * numSc;
  const std::size_t scalesAt = reg.payload + alignUp(rows * H, 64);  // int8: after the rows
  std::size_t bytesSent = 0;
  for (int t = 0; t < N; ++t) {
    const Bf16* xt = in.x + static_cast<std::size_t>(t) * H;
    if (int8) quantizeInt8(xt, H, group, q.data(), scales.data());
    const void* src = int8 ? static_cast<const void*>(q.data()) : xt;
    for (int k = 0; k < K; ++k) {
      const std::size_t m = static_cast<std::size_t>(t) * K + k;
      const std::int64_t e = in.topkIdx[m];
      if (e < 0) continue;
      const int d = static_cast<int>(e / local);
      const std::size_t cell = static_cast<std::size_t>(e);  // = d * local + le
      const std::size_t row = next[cell]++;
      slot.msgDest[m] = d;
      slot.msgPos[m] = static_cast<std::int32_t>(row);
      meta[d * sh.maxMessagesPerPeer() + metaAt[cell]++] = static_cast<std::int32_t>(m);
      const std::size_t at = reg.payload + row * rowBytes;
      if (d == w.me) {
        std::memcpy(w.base + at, src, rowBytes);
        if (int8) std::memcpy(w.base + scalesAt + row * scaleBytes, scales.data(), scaleBytes);
        continue;
      }
      w.window->put(d, at, src, rowBytes);
      if (int8) w.window->put(d, scalesAt + row * scaleBytes, scales.data(), scaleBytes);
      bytesSent += rowBytes + scaleBytes;
    }
  }
  // Meta blocks, then the signal that publishes everything put before it.
  const std::size_t metaBlock = sh.maxMessagesPerPeer() * sizeof(std::int32_t);
  for (int d = 0; d < w.R; ++d) {
    const std::size_t at = reg.meta + w.me * metaBlock;
    const std::int32_t* block = meta.data() + d * sh.maxMessagesPerPeer();
    if (d == w.me) {
      std::memcpy(w.base + at, block, metaTotal[d] * sizeof(std::int32_t));
      continue;
    }
    w.window->put(d, at, block, metaTotal[d] * sizeof(std::int32_t));
    w.window->signal(d, w.dispatchSignal(index, w.me), slot.sequence, SignalOp::kSet);
    bytesSent += metaTotal[d] * sizeof(std::int32_t);
  }
  return bytesSent;
}

void pushDispatchReceive(LlWindow& w, int index, LlSlot& slot) {
  for (int s = 0; s < w.R; ++s) {
    if (s != w.me) w.window->waitSignal(w.dispatchSignal(index, s), slot.sequence);
  }
  const LlShape& sh = w.shape;
  const LlWindowRegion& reg = w.regions[index];
  const int local = sh.numLocal(), H = sh.hidden, K = slot.numTopk;
  const std::size_t TR = sh.rowsPerExpert();
  const auto* meta = reinterpret_cast<const std::int32_t*>(w.base + reg.meta);
  slot.rowMsg.resize(static_cast<std::size_t>(local) * TR);
  std::vector<std::size_t> metaAt(w.R, 0);  // position in each source's meta block
  for (int e = 0; e < local; ++e) {
    std::int64_t begin = 0;
    for (int s = 0; s < w.R; ++s) {
      const std::int32_t count = countOf(w, slot, s, w.me, e);
      const std::int32_t* ids = meta + s * sh.maxMessagesPerPeer() + metaAt[s];
      const std::size_t first = e * TR + static_cast<std::size_t>(begin);
      for (std::int32_t i = 0; i < count; ++i) {
        slot.rowMsg[first + i] = ids[i];
        slot.srcInfo[first + i] = ids[i] / K;
      }
      metaAt[s] += static_cast<std::size_t>(count);
      slot.layoutRange[e * w.R + s] = (begin << 32) | static_cast<std::uint32_t>(count);
      begin += count;
    }
    slot.recvCount[e] = static_cast<std::int32_t>(begin);
    if (isInt8(slot.quant) && slot.dequantize) {
      const int group = quantGroupSize(slot.quant, H), numSc = H / group;
      for (std::size_t row = e * TR; row < e * TR + static_cast<std::size_t>(begin); ++row) {
        dequantizeInt8(slot.recvXInt8 + row * H, slot.recvScales + row * numSc, H, group,
                       slot.recvX + row * H);
      }
    }
  }
}

}  // namespace epcomm::ep
