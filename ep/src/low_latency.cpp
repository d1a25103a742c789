// Low-latency dispatch and combine (semantics in ep/low_latency.h, memory in ll_slot.h).
// Here: validation and the Agreement (which every rank enters before any data moves), the
// two alternating slots, handles and hooks. The data moves through the Buffer's transport
// (ll_transport.h: window or collective): dispatch sends, receive (now, or in the hook)
// completes; combine the same way.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/agreement.h"
#include "ep/buffer.h"
#include "ep/src/buffer_state.h"
#include "ep/src/low_latency_state.h"

namespace epcomm::ep {
namespace {

constexpr const char* kDispatchOp = "ep::lowLatencyDispatch";
constexpr const char* kCombineOp = "ep::lowLatencyCombine";

// Completes the dispatch in slot `index` (sequence `seq`).
void receiveDispatch(BufferState& s, int index, std::uint64_t seq) {
  const Communicator::CallScope call(s.comm, "ep::lowLatencyDispatch's receive");
  LowLatencyState& ll = *s.lowLatency;
  LlSlot& slot = ll.slot(index);
  if (slot.sequence != seq || slot.pending != LlSlot::Pending::kDispatch) {
    throwError(ErrorCode::kInvalidUsage, s.comm.rank(), kDispatchOp,
               "receive hook called twice, or after its slot was reused");
  }
  slot.pending = LlSlot::Pending::kNone;
  ll.transport().dispatchReceive(index, slot);
  slot.received = true;
}

// Completes the combine pending in slot `index` into slot.combineOut.
void receiveCombine(BufferState& s, int index, std::uint64_t seq, std::uint64_t combineSeq,
                    const float* topkWeights) {
  const Communicator::CallScope call(s.comm, "ep::lowLatencyCombine's receive");
  LowLatencyState& ll = *s.lowLatency;
  LlSlot& slot = ll.slot(index);
  if (slot.sequence != seq || slot.combineSequence != combineSeq ||
      slot.pending != LlSlot::Pending::kCombine) {
    throwError(ErrorCode::kInvalidUsage, s.comm.rank(), kCombineOp,
               "receive hook called twice, or after its slot was reused");
  }
  slot.pending = LlSlot::Pending::kNone;
  ll.transport().combineReceive(index, slot, topkWeights);
}

}  // namespace

void Buffer::lowLatencyDispatch(const LowLatencyDispatchInputs& given,
                                LowLatencyDispatchOutputs& out) {
  BufferState& s = *state_;
  LowLatencyDispatchInputs translated;
  const LowLatencyDispatchInputs& in = s.mask.apply(given, translated);
  Communicator& comm = s.comm;
  const int R = comm.size(), T = s.config.llMaxTokens;
  const int N = in.numTokens, H = in.hidden, K = in.numTopk, E = in.numExperts;
  const Communicator::CallScope call(comm, kDispatchOp);
  CallAgreement agreement(kDispatchOp);
  if (auto masked = s.mask.problem(given.numExperts)) agreement.fail(*masked);
  if (N > T) {
    agreement.fail(fmt::format(
        "numTokens {} exceeds the low-latency capacity T = {} (EPCOMM_EP_LL_MAX_TOKENS / "
        "SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK)",
        N, T));
  }
  if (N < 0) agreement.fail(fmt::format("numTokens {} must be >= 0", N));
  if (H <= 0) agreement.fail(fmt::format("hidden {} must be >= 1", H));
  if (K <= 0) agreement.fail(fmt::format("numTopk {} must be >= 1", K));
  if (E <= 0 || E % R != 0) {
    agreement.fail(fmt::format("numExperts {} must be a positive multiple of {} ranks", E, R));
  }
  if (N > 0 && (!in.x || !in.topkIdx)) agreement.fail("x or topkIdx is null");
  if (in.quant == Quant::kDefault || (in.quant != Quant::kNone && !isInt8(in.quant))) {
    agreement.fail("quant must be kNone, kInt8Group or kInt8PerToken");
  } else if (isInt8(in.quant) && H > 0 && H % quantGroupSize(in.quant, H) != 0) {
    agreement.fail(fmt::format(
        "hidden {} is not a multiple of the int8 quantisation group {} (use kInt8PerToken)", H,
        kQuantGroup));
  }
  for (int t = 0; agreement.ok() && t < N; ++t) {
    const std::int64_t* idx = in.topkIdx + static_cast<std::size_t>(t) * K;
    for (int k = 0; k < K && agreement.ok(); ++k) {
      if (idx[k] < -1 || idx[k] >= E) {
        agreement.fail(
            fmt::format("topkIdx[{}, {}] = {} is outside [-1, numExperts = {})", t, k, idx[k], E));
      }
      for (int j = 0; j < k && agreement.ok(); ++j) {
        if (idx[k] >= 0 && idx[j] == idx[k]) {
          agreement.fail(fmt::format("token {} lists expert {} twice", t, idx[k]));
        }
      }
    }
  }
  const LlShape shape{R, T, H, E, K};
  LowLatencyState* ll = s.lowLatency.get();
  const bool reshape = !ll || !(ll->shape() == shape);
  if (reshape && ll && ll->anyPending()) {
    agreement.fail("a low-latency call with another shape is still waiting for its hook");
  }
  if (!reshape && ll->slot(ll->nextSlot()).pending != LlSlot::Pending::kNone) {
    agreement.fail("both low-latency slots hold results whose receive hook was not called");
  }
  agreement.same("hidden", H);
  agreement.same("numExperts", E);
  agreement.same("numTopk", K);
  agreement.same("quant", static_cast<int>(in.quant));
  if (in.zeroCopy && in.quant != Quant::kNone) {
    agreement.fail("a zero-copy dispatch carries bf16 rows: quant must be kNone");
  }
  if (in.zeroCopy && s.llTransport != LlTransportKind::kWindow) {
    agreement.fail(
        "a zero-copy dispatch needs the window transport (EPCOMM_EP_TRANSPORT=window or auto on "
        "one host) with every peer's window mapped (shm, or mpi on one node)");
  }
  agreement.same("zeroCopy", in.zeroCopy ? 1 : 0);
  comm.agree(agreement);

  if (reshape) {
    s.lowLatency.reset();
    s.lowLatency = std::make_unique<LowLatencyState>(comm, shape, s.llTransport);
    ll = s.lowLatency.get();
  }
  if (in.zeroCopy && !ll->zeroCopyChecked()) {
    // Once per shape: whether every peer's window is mapped (one more agreement).
    CallAgreement mapped(kDispatchOp);
    if (!ll->transport().mapsEveryPeer()) {
      mapped.fail(
          fmt::format("a zero-copy dispatch needs every peer's window mapped here; "
                      "backend {} does not map them (use shm, or mpi on one node)",
                      comm.backendName()));
    }
    comm.agree(mapped);
    ll->setZeroCopyChecked();
  }
  const int index = ll->nextSlot();
  ll->advance();
  LlSlot& slot = ll->slot(index);
  slot.sequence = ++s.lowLatencySequence;
  slot.received = false;
  slot.numTokens = N;
  slot.numTopk = K;
  slot.quant = in.quant;
  slot.dequantize = in.dequantize;
  slot.zeroCopyDispatch = in.zeroCopy;
  // Sized here (its data() is the output); the receive sets every valid row.
  if (in.zeroCopy) slot.rowPtrs.resize(static_cast<std::size_t>(shape.numLocal()) * T * R);
  slot.msgDest.assign(static_cast<std::size_t>(N) * K, -1);
  slot.msgPos.assign(static_cast<std::size_t>(N) * K, -1);

  const int local = shape.numLocal();
  out.bytesSent = ll->transport().dispatchSend(index, slot, in);
  slot.pending = LlSlot::Pending::kDispatch;

  const bool int8 = isInt8(in.quant);
  const int numSc = numScales(in.quant, H);
  out.numLocalExperts = local;
  out.numRanks = R;
  out.maxTokens = T;
  out.hidden = H;
  out.numScales = numSc;
  out.quant = in.quant;
  out.recvX = !in.zeroCopy && (!int8 || in.dequantize) ? slot.recvX : nullptr;
  out.recvRows = in.zeroCopy ? slot.rowPtrs.data() : nullptr;
  out.recvXInt8 = int8 ? slot.recvXInt8 : nullptr;
  out.recvScales = int8 ? slot.recvScales : nullptr;
  out.recvCount = slot.recvCount;
  out.srcInfo = slot.srcInfo;
  out.layoutRange = slot.layoutRange;
  out.handle = {index, slot.sequence, N, K, H, E};
  out.hook = nullptr;
  BufferState* state = state_.get();
  const std::uint64_t seq = slot.sequence;
  if (in.returnRecvHook) {
    out.hook = [state, index, seq] { receiveDispatch(*state, index, seq); };
  } else {
    receiveDispatch(s, index, seq);
  }
}

void Buffer::lowLatencyCombine(const LowLatencyCombineInputs& given,
                               LowLatencyCombineOutputs& out) {
  BufferState& s = *state_;
  LowLatencyCombineInputs translated;
  const LowLatencyCombineInputs& in = s.mask.apply(given, translated);
  Communicator& comm = s.comm;
  const Communicator::CallScope call(comm, kCombineOp);
  CallAgreement agreement(kCombineOp);
  LowLatencyState* ll = s.lowLatency.get();
  const LowLatencyHandle& h = in.handle;
  LlSlot* slot = nullptr;
  bool zeroCopy = in.zeroCopy;  // x in the zero-copy buffer, flagged or not
  if (!ll || h.slot < 0 || h.slot > 1 || ll->slot(h.slot).sequence != h.sequence) {
    agreement.fail(
        "handle is stale (its slot was reused by a later dispatch) or not from this "
        "Buffer");
  } else {
    slot = &ll->slot(h.slot);
    if (!slot->received || slot->pending != LlSlot::Pending::kNone) {
      agreement.fail(
          "the dispatch's receive hook has not been called, or a combine of it is "
          "pending");
    }
    zeroCopy = zeroCopy || (in.x && in.x == slot->combineBuffer);
    if (!zeroCopy && !in.x && ll->shape().numLocal() > 0) agreement.fail("x is null");
    if (slot->numTokens > 0 && !in.topkWeights) agreement.fail("topkWeights is null");
    if (in.topkIdx && slot) {
      for (std::size_t m = 0; m < slot->msgDest.size() && agreement.ok(); ++m) {
        if ((in.topkIdx[m] >= 0) != (slot->msgDest[m] >= 0)) {
          agreement.fail("topkIdx differs from the dispatch's");
        }
      }
    }
  }
  agreement.same("hidden", h.hidden);
  agreement.same("numExperts", h.numExperts);
  // The window transport's sources read a zero-copy combine's rows in place: every rank
  // must take the same path, or one waits for rows (or a read signal) never coming.
  agreement.same("zeroCopy", zeroCopy ? 1 : 0);
  comm.agree(agreement);

  const Bf16* x = zeroCopy ? slot->combineBuffer : in.x;
  slot->combineSequence = ++s.combineSequence;
  out.bytesSent = ll->transport().combineSend(h.slot, *slot, x, !in.returnRecvHook);
  slot->pending = LlSlot::Pending::kCombine;
  slot->combineOut = in.out ? in.out : slot->combined;
  out.combinedX = slot->combineOut;
  out.numTokens = slot->numTokens;
  out.hook = nullptr;
  BufferState* state = state_.get();
  const int index = h.slot;
  const std::uint64_t seq = h.sequence, combineSeq = slot->combineSequence;
  const float* weights = in.topkWeights;
  if (in.returnRecvHook) {
    out.hook = [state, index, seq, combineSeq, weights] {
      receiveCombine(*state, index, seq, combineSeq, weights);
    };
  } else {
    receiveCombine(s, index, seq, combineSeq, weights);
  }
}

Bf16* Buffer::lowLatencyCombineBuffer(const LowLatencyHandle& handle) {
  LowLatencyState* ll = state_->lowLatency.get();
  if (!ll || handle.slot < 0 || handle.slot > 1 ||
      ll->slot(handle.slot).sequence != handle.sequence) {
    throwError(ErrorCode::kInvalidArgument, rank(), "ep::lowLatencyCombineBuffer",
               "handle is stale (its slot was reused by a later dispatch) or not from this "
               "Buffer");
  }
  return ll->slot(handle.slot).combineBuffer;
}

}  // namespace epcomm::ep
