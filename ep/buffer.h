// ep::Buffer: DeepEP's Buffer for host memory. It owns the staging memory of normal mode
// (bounded by BufferConfig::normalBytes, EPCOMM_EP_BUFFSIZE) and the two alternating slots
// of low-latency mode (sized by T, hidden, experts and top-k at the first low-latency call),
// and moves data only through the Communicator: its collectives or its symmetric windows
// (Transport below).
//
// Every call is collective: every rank calls it, in the same order, with the same hidden,
// numExperts and numTopk. Before any data moves the ranks agree (one small all-reduce) on
// whether every rank's arguments are valid; a bad argument on any rank (a topk index outside
// [-1, numExperts), N > T in low-latency mode, hidden not a multiple of the quantisation
// group, a too small buffer, shapes differing across ranks) is an epcomm::Error
// (kInvalidArgument) on every rank, naming the rank at fault, and the Buffer stays usable.
// Errors inside the communicator (a lost peer, a timeout) abort it as any collective does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "../comm/communicator.h"
#include "../comm/export.h"
#include "layout.h"
#include "low_latency.h"
#include "normal.h"
#include "quant.h"

namespace epcomm::ep {

// SGLang's --deepep-mode: normal, low_latency, or auto (normal for prefill/extend batches,
// low-latency for decode batches).
enum class Mode : int { kNormal = 0, kLowLatency = 1, kAuto = 2 };
enum class BatchKind : int { kPrefill = 0, kDecode = 1 };  // kPrefill: prefill or extend

// The mode a batch runs in (SGLang's DeepEPMode.resolve).
inline Mode resolveMode(Mode configured, BatchKind batch) {
  if (configured != Mode::kAuto) return configured;
  return batch == BatchKind::kDecode ? Mode::kLowLatency : Mode::kNormal;
}

// How the Buffer moves data (EPCOMM_EP_TRANSPORT). kWindow: puts and signals through the
// communicator's symmetric windows (low-latency mode: zero-copy into the receiver's output
// layout; normal mode, for calls in one round whose window fits normalBytes: rows put
// straight from x, combine rows summed where they land); kCollective: all-to-all(-v)
// collectives, on any backend. kAuto: kWindow when the backend has windows and every rank
// is on this host, else kCollective.
enum class Transport : int { kAuto = 0, kWindow = 1, kCollective = 2 };

// Experts masked after Communicator::shrink (DeepEP's low-latency mask buffer, for every
// mode): the caller keeps numbering experts over the ranks they were laid out on
// (originalRanks: the communicator's size before the shrink, numExperts / originalRanks
// experts each, numExperts counting them all), communicator rank r holds the experts of
// original rank keptRanks[r] (as shrink returned them), and the experts of the ranks not kept
// are masked: nothing is sent for them and combine adds nothing for them, so a token routed
// only to masked experts gets zeros. Outputs that are per local expert are unchanged; the
// layout's numTokensPerExpert stays in the caller's numbering (zeros where masked).
// Empty keptRanks: no mask.
struct ExpertMask {
  int originalRanks = 0;
  std::vector<int> keptRanks;  // [communicator size]
};

struct EPCOMM_API BufferConfig {
  std::size_t normalBytes = std::size_t{1024} << 20;  // EPCOMM_EP_BUFFSIZE (MiB)
  int rounds = 0;                // EPCOMM_EP_ROUNDS: at most this many rounds (0: no limit)
  int roundTokens = 0;           // EPCOMM_EP_ROUND_TOKENS: tokens per round (0: one round)
  bool combineRounds = false;    // EPCOMM_EP_COMBINE_ROUNDS: combine in the same rounds
  bool int8 = false;             // EPCOMM_EP_INT8: int8 dispatch in normal mode by default
  int quantGroup = kQuantGroup;  // EPCOMM_EP_QUANT_GROUP: 128, or 0 for one scale per token
  int llMaxTokens = 128;         // EPCOMM_EP_LL_MAX_TOKENS: low-latency capacity T
  Transport transport = Transport::kAuto;  // EPCOMM_EP_TRANSPORT: auto, window, collective
  // EPCOMM_EP_HOST_RELAY: across hosts, normal mode sends a token to each remote host once
  // and forwards it inside that host (ep/src/host_relay.h); false: one copy per remote rank.
  bool hostRelay = true;
  ExpertMask mask;  // after a shrink; no mask by default
  // The wire format of a normal dispatch asking for `requested`: kDefault is int8 (one scale
  // per quantGroup channels, or per token when it is 0) where int8 is set, else bf16.
  Quant normalQuant(Quant requested) const {
    if (requested != Quant::kDefault) return requested;
    return !int8 ? Quant::kNone : quantGroup == 0 ? Quant::kInt8PerToken : Quant::kInt8Group;
  }
  // Reads the EPCOMM_EP_* knobs (and their DeepEP / SGLang aliases) from `config`.
  static BufferConfig fromConfig(const Config& config);
  static BufferConfig fromEnvironment() { return fromConfig(Config::fromEnvironment()); }
};

class BufferState;

class EPCOMM_API Buffer {
 public:
  // Collective. The communicator must outlive the Buffer.
  Buffer(Communicator& comm, const BufferConfig& config = BufferConfig::fromEnvironment());
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  const BufferConfig& config() const;
  Communicator& communicator() const;
  int rank() const;
  int numRanks() const;
  // Bytes of memory the Buffer holds (reserved address space; pages are touched as used),
  // its windows included.
  std::size_t footprintBytes() const;
  // The transport in use: kWindow or kCollective (never kAuto).
  Transport transport() const;

  // DeepEP's get_dispatch_layout, checked on every rank (one small all-reduce).
  void getDispatchLayout(const LayoutInputs& in, LayoutOutputs& out);

  // Normal mode (ep/normal.h).
  void dispatch(const DispatchInputs& in, DispatchOutputs& out);
  void combine(const CombineInputs& in, CombineOutputs& out);

  // Low-latency mode (ep/low_latency.h).
  void lowLatencyDispatch(const LowLatencyDispatchInputs& in, LowLatencyDispatchOutputs& out);
  void lowLatencyCombine(const LowLatencyCombineInputs& in, LowLatencyCombineOutputs& out);
  // Where the caller may write expert outputs [numLocalExperts, T * R, hidden] for a
  // zero-copy combine of this dispatch (valid while the handle is; not to be written while
  // a combine from it is in flight, see ep/low_latency.h).
  Bf16* lowLatencyCombineBuffer(const LowLatencyHandle& handle);

 private:
  std::unique_ptr<BufferState> state_;
};

}  // namespace epcomm::ep
