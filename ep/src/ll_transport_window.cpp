// The low-latency transport over one symmetric window (layout, signals and the reuse
// invariant in ll_window.h). Dispatch pulls where every peer's window is mapped here and
// pushes otherwise (ll_window_pull.cpp, ll_window_push.cpp). Combine, here:
// Combine number c (monotonic per Buffer) of slot k: expert rank puts row i of (e, s) into
// s's combine[k] at the row's message id, then signals combine(k, me) = c; the source waits
// for every peer, then sums in place (own rows read from x itself when x outlives the call,
// i.e. no hook; else copied into its own combine[k] at send time).
// In place (x is zeroCopy[k], every peer mapped): the expert rank only signals combine(k, me)
// = c; the source waits for every peer, sums reading each row in its expert rank's
// zeroCopy[k], signals read(k, me) = c to every peer and waits for every peer's read(k, s)
// >= c before returning, so once a rank's combine completed no peer reads its zeroCopy[k]
// and the caller may write it again (the next combine of the same dispatch).
#include <algorithm>
#include <cstring>
#include <vector>

#include "ep/src/ll_transport.h"
#include "ep/src/ll_window.h"
#include "ep/src/normal_plan.h"
#include "ep/src/window_create.h"

namespace epcomm::ep {

LlWindow::LlWindow(Communicator& comm, const LlShape& s)
    : shape(s), me(comm.rank()), R(s.numRanks) {
  const std::size_t rows = static_cast<std::size_t>(s.numLocal()) * s.rowsPerExpert();
  const std::size_t H = s.hidden;
  const std::size_t payload = alignUp(rows * s.payloadBytes() + 64, 64);
  const std::size_t meta = alignUp(R * s.maxMessagesPerPeer() * sizeof(std::int32_t), 64);
  const std::size_t combine =
      alignUp(static_cast<std::size_t>(s.maxTokens) * s.numTopk * 2 * H, 64);
  const std::size_t zeroCopy = alignUp(rows * 2 * H, 64);
  const std::size_t counts =
      alignUp(static_cast<std::size_t>(R) * R * s.numLocal() * sizeof(std::int32_t), 64);
  tokenStride = alignUp(std::max(2 * H, alignUp(H, 4) + sizeof(float) * s.maxScales()), 64);
  const std::size_t tokens = tokenStride * s.maxTokens;
  const std::size_t topk =
      alignUp(sizeof(std::int64_t) * (1 + static_cast<std::size_t>(s.maxTokens) * s.numTopk), 64);
  std::size_t at = 0;
  for (LlWindowRegion& r : regions) {
    r.payload = at;
    r.meta = r.payload + payload;
    r.combine = r.meta + meta;
    r.zeroCopy = r.combine + combine;
    r.counts = r.zeroCopy + zeroCopy;
    r.tokens = r.counts + counts;
    r.topk = r.tokens + tokens;
    at = r.topk + topk;
  }
  window =
      createEpWindow(comm, at, 8 * R,
                     "its size grows with the low-latency capacity T (lower "
                     "EPCOMM_EP_LL_MAX_TOKENS / SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK)");
  base = static_cast<std::byte*>(window->data());
  peers.resize(R);
  mapsPeers = true;
  for (int r = 0; r < R; ++r) {
    peers[r] = static_cast<const std::byte*>(window->peerData(r));
    mapsPeers = mapsPeers && peers[r] != nullptr;
  }
}

void LlWindow::setOutputs(int index, LlSlot& slot, bool int8) const {
  std::byte* payload = base + regions[index].payload;
  if (!int8) {
    slot.recvX = reinterpret_cast<Bf16*>(payload);
    slot.recvXInt8 = slot.arenaRecvXInt8;
    slot.recvScales = slot.arenaRecvScales;
    return;
  }
  const std::size_t rows = static_cast<std::size_t>(shape.numLocal()) * shape.rowsPerExpert();
  slot.recvX = slot.arenaRecvX;
  slot.recvXInt8 = reinterpret_cast<std::int8_t*>(payload);
  slot.recvScales = reinterpret_cast<float*>(payload + alignUp(rows * shape.hidden, 64));
}

namespace {

class WindowLlTransport final : public LlTransport {
 public:
  WindowLlTransport(Communicator& comm, const LlShape& shape) : w_(comm, shape) {}

  std::size_t footprintBytes() const override { return w_.window->bytes(); }
  Bf16* combineBuffer(int index) override {
    return reinterpret_cast<Bf16*>(w_.base + w_.regions[index].zeroCopy);
  }
  bool mapsEveryPeer() const override { return w_.mapsPeers; }
  std::size_t dispatchSend(int index, LlSlot& slot, const LowLatencyDispatchInputs& in) override {
    return w_.mapsPeers ? pullDispatchSend(w_, index, slot, in)
                        : pushDispatchSend(w_, index, slot, in);
  }
  void dispatchReceive(int index, LlSlot& slot) override {
    if (w_.mapsPeers) {
      pullDispatchReceive(w_, index, slot);
    } else {
      pushDispatchReceive(w_, index, slot);
    }
  }

  std::size_t combineSend(int index, LlSlot& slot, const Bf16* x, bool keepsX) override {
    const LlShape& sh = w_.shape;
    const int me = w_.me, R = w_.R, local = sh.numLocal();
    const std::size_t at = w_.regions[index].combine;
    const std::size_t H = sh.hidden, rowBytes = 2 * H, TR = sh.rowsPerExpert();
    // x in this slot's zero-copy buffer, every peer mapped: sources read it in place.
    slot.combinePull = w_.mapsPeers && x == combineBuffer(index);
    std::size_t bytesSent = 0;
    for (int e = 0; e < local; ++e) {
      for (int s = 0; s < R; ++s) {
        const std::int64_t range = slot.layoutRange[e * R + s];
        const std::size_t first = e * TR + static_cast<std::size_t>(range >> 32);
        const std::size_t count = static_cast<std::size_t>(range & 0xffffffff);
        if (s != me) bytesSent += count * rowBytes;
        if ((s == me && keepsX) || slot.combinePull) continue;  // read in place
        for (std::size_t row = first; row < first + count; ++row) {
          const std::size_t to = at + static_cast<std::size_t>(slot.rowMsg[row]) * rowBytes;
          if (s == me) {
            std::memcpy(w_.base + to, x + row * H, rowBytes);
          } else {
            w_.window->put(s, to, x + row * H, rowBytes);
          }
        }
      }
    }
    slot.combineX = keepsX ? x : nullptr;
    for (int s = 0; s < R; ++s) {
      if (s != me) w_.window->signal(s, w_.combineSignal(index, me), slot.combineSequence);
    }
    return bytesSent;
  }

  void combineReceive(int index, LlSlot& slot, const float* weights) override {
    const int me = w_.me, R = w_.R;
    for (int s = 0; s < R; ++s) {
      if (s != me) w_.window->waitSignal(w_.combineSignal(index, s), slot.combineSequence);
    }
    const std::size_t H = w_.shape.hidden;
    const LlWindowRegion& reg = w_.regions[index];
    if (slot.combinePull) {
      sumCombinedRows(slot, w_.shape.hidden, weights, [&](std::size_t m) {
        const std::byte* rows = w_.peers[slot.msgDest[m]] + reg.zeroCopy;
        return reinterpret_cast<const Bf16*>(rows) + static_cast<std::size_t>(slot.msgPos[m]) * H;
      });
      // Peers may write their zero-copy buffers once this returns: wait until none still
      // reads this rank's.
      for (int s = 0; s < R; ++s) {
        if (s != me) w_.window->signal(s, w_.readSignal(index, me), slot.combineSequence);
      }
      for (int s = 0; s < R; ++s) {
        if (s != me) w_.window->waitSignal(w_.readSignal(index, s), slot.combineSequence);
      }
      slot.combinePull = false;
      return;
    }
    const auto* back = reinterpret_cast<const Bf16*>(w_.base + reg.combine);
    sumCombinedRows(slot, w_.shape.hidden, weights, [&](std::size_t m) {
      return slot.msgDest[m] == me && slot.combineX
                 ? slot.combineX + static_cast<std::size_t>(slot.msgPos[m]) * H
                 : back + m * H;
    });
    slot.combineX = nullptr;
  }

 private:
  LlWindow w_;
};

}  // namespace

std::unique_ptr<LlTransport> makeWindowLlTransport(Communicator& comm, const LlShape& shape) {
  return std::make_unique<WindowLlTransport>(comm, shape);
}

}  // namespace epcomm::ep
