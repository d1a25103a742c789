#include "ep/src/low_latency_state.h"

#include <algorithm>

#include "ep/src/normal_plan.h"

namespace epcomm::ep {

std::size_t LlShape::payloadBytes() const {
  return std::max<std::size_t>(2 * static_cast<std::size_t>(hidden),
                               static_cast<std::size_t>(hidden) + 4 * maxScales());
}

std::size_t LlShape::messageBytes() const {
  return alignUp(payloadBytes() + sizeof(std::int32_t), 16);
}

std::size_t LlShape::maxMessagesPerPeer() const {
  return static_cast<std::size_t>(maxTokens) * std::min(numTopk, numLocal());
}

std::size_t LlShape::headerBytes() const {
  return alignUp(sizeof(std::int32_t) * numLocal(), 64);
}

std::size_t LlShape::blockBytes() const {
  // At most T tokens, each to at most min(K, E_local) experts of one peer.
  return alignUp(headerBytes() + maxMessagesPerPeer() * messageBytes(), 64);
}

LowLatencyState::LowLatencyState(Communicator& comm, const LlShape& shape, LlTransportKind kind)
    : shape_(shape),
      transport_(kind == LlTransportKind::kWindow ? makeWindowLlTransport(comm, shape)
                                                  : makeCollectiveLlTransport(comm, shape)) {
  const std::size_t rows = static_cast<std::size_t>(shape.numLocal()) * shape.rowsPerExpert();
  const std::size_t hidden = static_cast<std::size_t>(shape.hidden);
  const std::size_t block = shape.blockBytes() * static_cast<std::size_t>(shape.numRanks);
  // The window transport places the combine buffer, and a dispatch's int8 rows and scales
  // (and bf16 rows, leaving the arena's recvX to int8 + dequantize), in its window, and
  // needs no send / receive blocks: the arena leaves those regions out.
  const bool placed = transport_->combineBuffer(0) != nullptr;
  std::size_t offsets[10];
  const std::size_t sizes[10] = {
      rows * hidden * 2,           // recvX
      placed ? 0 : rows * hidden,  // recvXInt8
      placed ? 0 : rows * shape.maxScales() * sizeof(float),
      rows * sizeof(std::int32_t),                                      // srcInfo
      static_cast<std::size_t>(shape.numLocal()) * shape.numRanks * 8,  // layoutRange
      static_cast<std::size_t>(shape.numLocal()) * 4,                   // recvCount
      placed ? 0 : rows * hidden * 2,                                   // combineBuffer
      static_cast<std::size_t>(shape.maxTokens) * hidden * 2,           // combined
      placed ? 0 : block,                                               // send
      placed ? 0 : block};                                              // recv
  std::size_t total = 0;
  for (int i = 0; i < 10; ++i) {
    offsets[i] = total;
    total += alignUp(sizes[i], 4096);
  }
  for (int i = 0; i < 2; ++i) {
    LlSlot& s = slots_[i];
    s.arena = MappedArena(total, comm.rank(), "low-latency slot");
    std::byte* b = s.arena.data();
    const auto region = [&](int k) { return sizes[k] ? b + offsets[k] : nullptr; };
    s.recvX = reinterpret_cast<Bf16*>(region(0));
    s.recvXInt8 = reinterpret_cast<std::int8_t*>(region(1));
    s.recvScales = reinterpret_cast<float*>(region(2));
    s.srcInfo = reinterpret_cast<std::int32_t*>(b + offsets[3]);
    s.layoutRange = reinterpret_cast<std::int64_t*>(b + offsets[4]);
    s.recvCount = reinterpret_cast<std::int32_t*>(b + offsets[5]);
    s.combineBuffer =
        placed ? transport_->combineBuffer(i) : reinterpret_cast<Bf16*>(b + offsets[6]);
    s.combined = reinterpret_cast<Bf16*>(b + offsets[7]);
    s.send = region(8);
    s.recv = region(9);
    s.arenaRecvX = s.recvX;
    s.arenaRecvXInt8 = s.recvXInt8;
    s.arenaRecvScales = s.recvScales;
  }
}

std::size_t LowLatencyState::footprintBytes() const {
  return slots_[0].arena.bytes() + slots_[1].arena.bytes() + transport_->footprintBytes();
}

bool LowLatencyState::anyPending() const {
  return slots_[0].pending != LlSlot::Pending::kNone || slots_[1].pending != LlSlot::Pending::kNone;
}

}  // namespace epcomm::ep
