// How low-latency mode moves its data. low_latency.cpp validates, agrees and keeps the slots;
// a transport packs, sends, receives and unpacks. One implementation per file:
//  - ll_transport_collective.cpp: one block per peer through all-to-all(-v) (any backend).
//  - ll_transport_window.cpp: puts straight into the peers' output layout through one
//    symmetric window (backends with windows); dispatch only sends, receive only waits.
// Calls come in this order per slot: dispatchSend, dispatchReceive (maybe later, from the
// hook), then any number of (combineSend, combineReceive) pairs. Every rank makes the same
// calls in the same order, each after the call's CallAgreement (an all-reduce every rank has
// entered), which the window transport relies on for reuse safety (see its header).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "comm/communicator.h"
#include "ep/low_latency.h"
#include "ep/src/ll_slot.h"

namespace epcomm::ep {

// EPCOMM_EP_TRANSPORT resolved for one Buffer.
enum class LlTransportKind { kCollective, kWindow };

class LlTransport {
 public:
  virtual ~LlTransport() = default;
  virtual std::size_t footprintBytes() const = 0;
  // Slot `index`'s zero-copy combine buffer [E_local, T*R, H] when the transport places it
  // (fixed for its lifetime), else nullptr: the slot's arena holds it.
  virtual Bf16* combineBuffer(int index) { return nullptr; }
  // Every peer's memory is mapped here (the window transport's pull dispatch): a zero-copy
  // dispatch can run. The same on every rank of a communicator on shared memory.
  virtual bool mapsEveryPeer() const { return false; }
  // Sends the dispatch of slot `index` (slot.msgDest/msgPos and the slot's output pointers
  // are set here). in.x may be reused on return. Returns payload bytes sent to peers.
  virtual std::size_t dispatchSend(int index, LlSlot& slot, const LowLatencyDispatchInputs& in) = 0;
  // Completes it: recvX/recvXInt8/recvScales, srcInfo, layoutRange, recvCount valid.
  virtual void dispatchReceive(int index, LlSlot& slot) = 0;
  // Sends expert outputs x [E_local, T*R, H] back. `keepsX`: x stays valid until
  // combineReceive returns (no hook), so own rows may be read in place. x may be
  // combineBuffer(index), which stays valid until combineReceive returns in any case.
  // Returns the bytes of x that peers receive.
  virtual std::size_t combineSend(int index, LlSlot& slot, const Bf16* x, bool keepsX) = 0;
  // Completes it: slot.combineOut[t] = sum_k weights[t, k] * row(t, k).
  virtual void combineReceive(int index, LlSlot& slot, const float* weights) = 0;
};

std::unique_ptr<LlTransport> makeCollectiveLlTransport(Communicator& comm, const LlShape& shape);
// Collective (creates the window).
std::unique_ptr<LlTransport> makeWindowLlTransport(Communicator& comm, const LlShape& shape);

}  // namespace epcomm::ep
