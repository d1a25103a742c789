// The low-latency window transport's shared state: one symmetric window
// (Communicator::createWindow) made at the first low-latency call of a shape (collective),
// its layout and signals. The transport (ll_transport_window.cpp) owns it and combines;
// dispatch has two algorithms, one per file:
//  - push (ll_window_push.cpp), any window: the sender puts every (token, expert) row
//    straight into the destination's output layout; the receiver copies nothing.
//  - pull (ll_window_pull.cpp), every peer's window mapped here (Window::peerData): the
//    sender stages each token once in its own window; each receiver copies its rows from
//    there, so a token crosses to another core once per rank, not once per expert.
//
// Window of every rank (64-byte aligned regions), per slot k in {0, 1}:
//   payload[k]  [E_local * T*R rows]: bf16 recvX [rows, H], or int8 recvXInt8 [rows, H]
//               then (64-byte aligned) recvScales [rows, numScales]; H + 4 * H/128 <= 2H
//   meta[k]     push: [R sources][T * min(K, E_local)] i32, message ids (t * K + k at the
//               source) of that source's rows, in (local expert, row) order
//   combine[k]  [T * K rows, H] bf16: row of message id m, put by the expert rank that has it
//   zeroCopy[k] [E_local * T*R rows, H] bf16: Buffer::lowLatencyCombineBuffer of slot k
//   counts[k]   push: [R sources][R destinations][E_local] i32, every source's count matrix
//   tokens[k]   pull: [T rows, tokenStride] this rank's tokens (bf16, or int8 + scales)
//   topk[k]     pull: i64 numTokens, then this rank's topkIdx [numTokens, K]
// Signals (kSet, values only grow, never reset: no ABA), per source s: counts(k, s) = 4Rk + s,
// dispatch(k, s) = 4Rk + R + s, combine(k, s) = 4Rk + 2R + s, each set by s after its last
// write of that kind for that call; read(k, s) = 4Rk + 3R + s, set by s once it has read
// its rows of an in-place combine.
//
// Reuse invariant (why dispatch and push combines need no acknowledgement signals): every
// call starts with its CallAgreement, an all-reduce that no rank leaves before every rank entered
// the call, and puts are complete on return. Region X[k] of rank d is written only by calls
// on slot k, i.e. by dispatch q (payload, meta, counts, tokens, topk) and by the combines of
// dispatch q (combine). A later writer of X[k] is dispatch q + 2 or a later combine of q;
// before it writes, rank d has entered that call, and entering it implies d is done with
// X[k]: dispatch q + 2 is refused (on every rank) while slot k's receive or combine hook is
// pending, outputs of dispatch q are invalid once dispatch q + 2 starts (the two-slot
// contract), and a combine of slot k is refused while an earlier one of slot k is pending.
// So no rank overwrites what another may still read. zeroCopy[k] is written by the caller,
// outside any call: the in-place combine waits for read signals instead (see the transport).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/window.h"
#include "ep/src/ll_slot.h"

namespace epcomm::ep {

struct LlWindowRegion {
  std::size_t payload = 0, meta = 0, combine = 0, zeroCopy = 0, counts = 0, tokens = 0, topk = 0;
};

struct LlWindow {
  LlWindow(Communicator& comm, const LlShape& shape);  // collective (creates the window)

  int countsSignal(int index, int src) const { return 4 * R * index + src; }
  int dispatchSignal(int index, int src) const { return 4 * R * index + R + src; }
  int combineSignal(int index, int src) const { return 4 * R * index + 2 * R + src; }
  int readSignal(int index, int src) const { return 4 * R * index + 3 * R + src; }
  // Points the slot's dispatch outputs at this rank's payload[index] (int8 dequantised into
  // bf16: the slot's arena).
  void setOutputs(int index, LlSlot& slot, bool int8) const;

  LlShape shape;
  int me;
  int R;
  LlWindowRegion regions[2];
  std::size_t tokenStride = 0;  // tokens[k] row: bf16 row, or int8 row + (4-aligned) scales
  std::unique_ptr<Window> window;
  std::byte* base = nullptr;
  std::vector<const std::byte*> peers;  // every rank's window as mapped here (or null)
  bool mapsPeers = false;               // no null in peers
  // Pull receive's scratch: (output row, where it lies in its source's window).
  std::vector<std::pair<std::size_t, const std::byte*>> pullCopies;
};

std::size_t pushDispatchSend(LlWindow& w, int index, LlSlot& slot,
                             const LowLatencyDispatchInputs& in);
void pushDispatchReceive(LlWindow& w, int index, LlSlot& slot);
// Needs w.mapsPeers.
std::size_t pullDispatchSend(LlWindow& w, int index, LlSlot& slot,
                             const LowLatencyDispatchInputs& in);
void pullDispatchReceive(LlWindow& w, int index, LlSlot& slot);

}  // namespace epcomm::ep
