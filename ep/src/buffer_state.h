// What a Buffer owns. Normal mode uses `normal` as its per-round staging, and with the window
// transport `normalWindow` for one-round calls (bounded by config.normalBytes); low-latency mode
// keeps its two slots and its transport in `lowLatency`, made at the first low-latency call
// (EPCOMM_EP_TRANSPORT, resolved once at construction, picks the transport).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "ep/buffer.h"
#include "ep/src/expert_mask.h"
#include "ep/src/host_relay.h"
#include "ep/src/ll_transport.h"
#include "ep/src/mapped_arena.h"
#include "ep/src/normal_window.h"

namespace epcomm::ep {

class LowLatencyState;

class BufferState {
 public:
  BufferState(Communicator& c, const BufferConfig& cfg);
  ~BufferState();

  Communicator& comm;
  BufferConfig config;
  MappedArena normal;  // config.normalBytes
  NormalWindow normalWindow;
  LayoutOutputs layout;  // scratch of dispatch's own layout computation
  std::unique_ptr<LowLatencyState> lowLatency;
  std::uint64_t lowLatencySequence = 0;  // dispatches so far (handles carry theirs)
  std::uint64_t combineSequence = 0;     // low-latency combines so far
  LlTransportKind llTransport = LlTransportKind::kCollective;  // decided at construction
  // Normal mode across hosts (EPCOMM_EP_HOST_RELAY); null on one host or when off.
  std::unique_ptr<HostRelay> relay;
  ExpertMap mask;  // config.mask, resolved
  // Normal-mode int8 dispatch: the round's tokens quantised up front (rows of tokens that do
  // not stay on this rank, and every token's scales), reused across calls.
  std::vector<std::int8_t> quantRows;
  std::vector<float> quantScales;
};

}  // namespace epcomm::ep
