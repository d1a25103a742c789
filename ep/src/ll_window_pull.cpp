// Pull dispatch over the low-latency window, for every peer's window mapped here (layout and
// signals in ll_window.h). Dispatch of sequence q into slot k:
// Send: write numTokens and topkIdx into my topk[k], each token once into my tokens[k]
// (bf16, or quantised: int8 row then scales), signal dispatch(k, me) = q at every peer;
// return (x may be reused).
// Receive (now or in the hook): wait dispatch(k, s) >= q for every peer s; read every
// source's topk[k] (the rows of source s for local expert e at rank d start at row
// e * T*R + the count of (d, e) messages of the sources below s, so every rank derives the
// same layout and where its own messages went); copy each of my rows from its source's
// tokens[k]: a token reaches this core once, then its other experts' rows copy from cache.
// A zero-copy dispatch (slot.zeroCopyDispatch) copies nothing: it records where each row is.
#include <algorithm>
#include <cstring>
#include <vector>

#include "comm/workers.h"
#include "ep/src/ll_window.h"
#include "ep/src/normal_plan.h"

namespace epcomm::ep {
namespace {

const std::int64_t* topkOf(const LlWindow& w, int index, int src) {
  return reinterpret_cast<const std::int64_t*>(w.peers[src] + w.regions[index].topk);
}

}  // namespace

std::size_t pullDispatchSend(LlWindow& w, int index, LlSlot& slot,
                             const LowLatencyDispatchInputs& in) {
  const LlWindowRegion& reg = w.regions[index];
  const int local = w.shape.numLocal(), N = in.numTokens, H = in.hidden, K = in.numTopk;
  const bool int8 = isInt8(in.quant);
  const int group = quantGroupSize(in.quant, H), numSc = int8 ? H / group : 0;
  w.setOutputs(index, slot, int8);
  auto* topk = reinterpret_cast<std::int64_t*>(w.base + reg.topk);
  topk[0] = N;
  if (N > 0) std::memcpy(topk + 1, in.topkIdx, sizeof(std::int64_t) * N * K);  // may be null at 0
  const std::size_t rowBytes = 2 * static_cast<std::size_t>(H);
  for (int t = 0; t < N; ++t) {
    const Bf16* xt = in.x + static_cast<std::size_t>(t) * H;
    std::byte* row = w.base + reg.tokens + t * w.tokenStride;
    if (int8) {
      quantizeInt8(xt, H, group, reinterpret_cast<std::int8_t*>(row),
                   reinterpret_cast<float*>(row + alignUp(H, 4)));
    } else {
      std::memcpy(row, xt, rowBytes);
    }
  }
  const std::size_t wireBytes = int8 ? H + sizeof(float) * numSc : rowBytes;
  std::size_t bytesSent = 0;  // what peers will copy from here
  for (std::size_t m = 0; m < static_cast<std::size_t>(N) * K; ++m) {
    const std::int64_t e = in.topkIdx[m];
    slot.msgDest[m] = e < 0 ? -1 : static_cast<int>(e / local);
    if (e >= 0 && slot.msgDest[m] != w.me) bytesSent += wireBytes;
  }
  for (int d = 0; d < w.R; ++d) {
    if (d != w.me) w.window->signal(d, w.dispatchSignal(index, w.me), slot.sequence);
  }
  return bytesSent;
}

void pullDispatchReceive(LlWindow& w, int index, LlSlot& slot) {
  for (int s = 0; s < w.R; ++s) {
    if (s != w.me) w.window->waitSignal(w.dispatchSignal(index, s), slot.sequence);
  }
  const LlShape& sh = w.shape;
  const int local = sh.numLocal(), H = sh.hidden, K = slot.numTopk, E = sh.numExperts, R = w.R;
  const std::size_t TR = sh.rowsPerExpert();
  const bool int8 = isInt8(slot.quant);
  const int numSc = int8 ? H / quantGroupSize(slot.quant, H) : 0;
  // counts[s][e]: messages of source s to expert e.
  std::vector<std::int32_t> counts(static_cast<std::size_t>(R) * E, 0);
  for (int s = 0; s < R; ++s) {
    const std::int64_t* topk = topkOf(w, index, s);
    std::int32_t* c = counts.data() + static_cast<std::size_t>(s) * E;
    for (std::int64_t m = 0; m < topk[0] * K; ++m) {
      if (topk[1 + m] >= 0) ++c[topk[1 + m]];
    }
  }
  // Where my messages went: after the lower sources' rows of their expert.
  std::vector<std::int64_t> next(E);
  for (int e = 0; e < E; ++e) {
    std::int64_t begin = static_cast<std::int64_t>((e % local) * TR);
    for (int s = 0; s < w.me; ++s) begin += counts[static_cast<std::size_t>(s) * E + e];
    next[e] = begin;
  }
  const std::int64_t* mine = topkOf(w, index, w.me) + 1;
  for (std::size_t m = 0; m < slot.msgDest.size(); ++m) {
    if (slot.msgDest[m] >= 0) slot.msgPos[m] = static_cast<std::int32_t>(next[mine[m]]++);
  }
  // My rows: per local expert, the sources in rank order, each source's tokens in order.
  std::vector<std::int64_t> cursor(static_cast<std::size_t>(local) * R);
  for (int le = 0; le < local; ++le) {
    std::int64_t begin = 0;
    for (int s = 0; s < R; ++s) {
      const std::int32_t count = counts[static_cast<std::size_t>(s) * E + w.me * local + le];
      slot.layoutRange[le * R + s] = (begin << 32) | static_cast<std::uint32_t>(count);
      cursor[le * R + s] = static_cast<std::int64_t>(le * TR) + begin;
      begin += count;
    }
    slot.recvCount[le] = static_cast<std::int32_t>(begin);
  }
  slot.rowMsg.resize(static_cast<std::size_t>(local) * TR);
  const std::size_t rowBytes = int8 ? H : 2 * static_cast<std::size_t>(H);
  // The rows to copy, listed first, then copied in parts over the worker threads (direct
  // loads from the peers' mapped windows into this rank's outputs).
  std::vector<std::pair<std::size_t, const std::byte*>>& copies = w.pullCopies;
  copies.clear();
  for (int s = 0; s < R; ++s) {
    const std::int64_t* topk = topkOf(w, index, s);
    const std::byte* tokens = w.peers[s] + w.regions[index].tokens;
    for (std::int64_t m = 0; m < topk[0] * K; ++m) {
      const std::int64_t e = topk[1 + m];
      if (e < 0 || e / local != w.me) continue;
      const auto le = static_cast<std::size_t>(e % local);
      const auto row = static_cast<std::size_t>(cursor[le * R + s]++);
      const std::int64_t t = m / K;
      const std::byte* from = tokens + t * w.tokenStride;
      slot.rowMsg[row] = static_cast<std::int32_t>(m);
      slot.srcInfo[row] = static_cast<std::int32_t>(t);
      if (slot.zeroCopyDispatch) {  // bf16: the row stays where its source staged it
        slot.rowPtrs[row] = reinterpret_cast<const Bf16*>(from);
        continue;
      }
      copies.emplace_back(row, from);
    }
  }
  const int group = int8 ? quantGroupSize(slot.quant, H) : 0;
  const std::size_t copyBytes = int8 && slot.dequantize ? 3 * rowBytes : rowBytes;
  parallelFor(copies.size(), copyBytes, 1, [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) {
      const auto [row, from] = copies[i];
      if (!int8) {
        std::memcpy(slot.recvX + row * H, from, rowBytes);
        continue;
      }
      std::memcpy(slot.recvXInt8 + row * H, from, rowBytes);
      std::memcpy(slot.recvScales + row * numSc, from + alignUp(H, 4), sizeof(float) * numSc);
      if (slot.dequantize) {
        dequantizeInt8(slot.recvXInt8 + row * H, slot.recvScales + row * numSc, H, group,
                       slot.recvX + row * H);
      }
    }
  });
}

}  // namespace epcomm::ep
