// Low-latency dispatch and combine (semantics in ep/low_latency.h, memory in
// low_latency_state.h). Dispatch: agree, pack one message per (token, expert) into the
// destination's block, send; receive (now, or in the hook) and unpack into the expert-major
// outputs. Combine: pack each source's rows (contiguous per local expert), send; receive
// (now, or in the hook) and sum each token's rows times its weights.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "ep/buffer.h"
#include "ep/src/agreement.h"
#include "ep/src/buffer_state.h"
#include "ep/src/kernels.h"
#include "ep/src/low_latency_state.h"

namespace epcomm::ep {
namespace {

constexpr const char* kDispatchOp = "ep::lowLatencyDispatch";
constexpr const char* kCombineOp = "ep::lowLatencyCombine";

int channelOf(int slot, bool combine) {
  return slot * 2 + (combine ? 1 : 0);
}

// Completes the dispatch in slot `index` (sequence `seq`) and unpacks it.
void receiveDispatch(BufferState& s, int index, std::uint64_t seq) {
  LowLatencyState& ll = *s.lowLatency;
  LlSlot& slot = ll.slot(index);
  if (slot.sequence != seq || slot.pending != LlSlot::Pending::kDispatch) {
    throwError(ErrorCode::kInvalidUsage, s.comm.rank(), kDispatchOp,
               "receive hook called twice, or after its slot was reused");
  }
  std::vector<std::size_t> recvBytes;
  ll.transport().receive(channelOf(index, false), recvBytes);
  slot.pending = LlSlot::Pending::kNone;
  slot.received = true;

  const LlShape& sh = ll.shape();
  const int R = sh.numRanks, local = sh.numLocal(), H = sh.hidden;
  const std::size_t rowsPerExpert = sh.rowsPerExpert(), msgBytes = sh.messageBytes();
  const bool int8 = isInt8(slot.quant);
  const int group = quantGroupSize(slot.quant, H), numSc = int8 ? H / group : 0;
  const std::size_t payload = int8 ? H + sizeof(float) * numSc : 2 * static_cast<std::size_t>(H);
  std::vector<std::size_t> cursor(R);  // message index in each source's block
  std::fill(cursor.begin(), cursor.end(), 0);
  for (int e = 0; e < local; ++e) {
    std::int64_t begin = 0;
    for (int src = 0; src < R; ++src) {
      const std::byte* block = slot.recv + src * sh.blockBytes();
      const std::int32_t count =
          recvBytes[src] == 0 ? 0 : reinterpret_cast<const std::int32_t*>(block)[e];
      const std::byte* msg = block + sh.headerBytes() + cursor[src] * msgBytes;
      for (std::int32_t i = 0; i < count; ++i, msg += msgBytes) {
        const std::size_t row = e * rowsPerExpert + static_cast<std::size_t>(begin + i);
        std::memcpy(&slot.srcInfo[row], msg + payload, sizeof(std::int32_t));
        if (!int8) {
          std::memcpy(slot.recvX + row * H, msg, payload);
          continue;
        }
        std::memcpy(slot.recvXInt8 + row * H, msg, H);
        std::memcpy(slot.recvScales + row * numSc, msg + H, sizeof(float) * numSc);
        if (slot.dequantize) {
          dequantizeInt8(slot.recvXInt8 + row * H, slot.recvScales + row * numSc, H, group,
                         slot.recvX + row * H);
        }
      }
      cursor[src] += static_cast<std::size_t>(count);
      slot.layoutRange[e * R + src] = (begin << 32) | static_cast<std::uint32_t>(count);
      begin += count;
    }
    slot.recvCount[e] = static_cast<std::int32_t>(begin);
  }
}

// Completes the combine pending in slot `index` and reduces it into slot.combineOut.
void receiveCombine(BufferState& s, int index, std::uint64_t seq, const float* topkWeights) {
  LowLatencyState& ll = *s.lowLatency;
  LlSlot& slot = ll.slot(index);
  if (slot.sequence != seq || slot.pending != LlSlot::Pending::kCombine) {
    throwError(ErrorCode::kInvalidUsage, s.comm.rank(), kCombineOp,
               "receive hook called twice, or after its slot was reused");
  }
  std::vector<std::size_t> recvBytes;
  ll.transport().receive(channelOf(index, true), recvBytes);
  slot.pending = LlSlot::Pending::kNone;
  const LlShape& sh = ll.shape();
  const int H = sh.hidden, K = slot.numTopk;
  std::vector<const Bf16*> rows(K);
  std::vector<float> weights(K);
  for (int t = 0; t < slot.numTokens; ++t) {
    int n = 0;
    for (int k = 0; k < K; ++k) {
      const std::size_t m = static_cast<std::size_t>(t) * K + k;
      if (slot.msgDest[m] < 0) continue;
      rows[n] = reinterpret_cast<const Bf16*>(slot.recv + slot.msgDest[m] * sh.blockBytes()) +
                static_cast<std::size_t>(slot.msgPos[m]) * H;
      weights[n] = topkWeights[m];
      ++n;
    }
    combineRows(rows.data(), weights.data(), n, H,
                slot.combineOut + static_cast<std::size_t>(t) * H);
  }
}

}  // namespace

void Buffer::lowLatencyDispatch(const LowLatencyDispatchInputs& in,
                                LowLatencyDispatchOutputs& out) {
  BufferState& s = *state_;
  Communicator& comm = s.comm;
  const int R = comm.size(), me = comm.rank(), T = s.config.llMaxTokens;
  const int N = in.numTokens, H = in.hidden, K = in.numTopk, E = in.numExperts;
  Agreement agreement(kDispatchOp);
  if (N > T) {
    agreement.fail("numTokens " + std::to_string(N) +
                   " exceeds the low-latency capacity T = " + std::to_string(T) +
                   " (EPCOMM_EP_LL_MAX_TOKENS / SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK)");
  }
  if (N < 0 || H <= 0 || K <= 0) agreement.fail("numTokens, hidden and numTopk must be valid");
  if (E <= 0 || E % R != 0) {
    agreement.fail("numExperts " + std::to_string(E) + " must be a positive multiple of " +
                   std::to_string(R) + " ranks");
  }
  if (N > 0 && (!in.x || !in.topkIdx)) agreement.fail("x or topkIdx is null");
  if (in.quant == Quant::kDefault || (in.quant != Quant::kNone && !isInt8(in.quant))) {
    agreement.fail("quant must be kNone, kInt8Group or kInt8PerToken");
  } else if (isInt8(in.quant) && H > 0 && H % quantGroupSize(in.quant, H) != 0) {
    agreement.fail("hidden " + std::to_string(H) +
                   " is not a multiple of the int8 quantisation "
                   "group " +
                   std::to_string(kQuantGroup) + " (use kInt8PerToken)");
  }
  for (int t = 0; agreement.ok() && t < N; ++t) {
    const std::int64_t* idx = in.topkIdx + static_cast<std::size_t>(t) * K;
    for (int k = 0; k < K && agreement.ok(); ++k) {
      if (idx[k] < -1 || idx[k] >= E) {
        agreement.fail("topkIdx[" + std::to_string(t) + ", " + std::to_string(k) +
                       "] = " + std::to_string(idx[k]) +
                       " is outside [-1, numExperts = " + std::to_string(E) + ")");
      }
      for (int j = 0; j < k && agreement.ok(); ++j) {
        if (idx[k] >= 0 && idx[j] == idx[k]) {
          agreement.fail("token " + std::to_string(t) + " lists expert " + std::to_string(idx[k]) +
                         " twice");
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
  agreement.agree(comm);

  if (reshape) {
    s.lowLatency.reset();
    s.lowLatency = std::make_unique<LowLatencyState>(comm, shape);
    ll = s.lowLatency.get();
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
  slot.msgDest.assign(static_cast<std::size_t>(N) * K, -1);
  slot.msgPos.assign(static_cast<std::size_t>(N) * K, -1);

  // Count, then place, the messages of each (destination, local expert).
  const int local = shape.numLocal();
  std::vector<std::int32_t> counts(static_cast<std::size_t>(R) * local, 0);
  for (std::size_t m = 0; m < slot.msgDest.size(); ++m) {
    const std::int64_t e = in.topkIdx[m];
    if (e >= 0) ++counts[e];  // expert e = dest * local + le
  }
  std::vector<std::int32_t> next(counts.size());
  LlBatch batch;
  batch.send = slot.send;
  batch.recv = slot.recv;
  batch.recvCapacity = shape.blockBytes();
  batch.sendBytes.resize(R);
  batch.sendOffsets.resize(R);
  const std::size_t msgBytes = shape.messageBytes();
  out.bytesSent = 0;
  for (int r = 0; r < R; ++r) {
    std::int32_t total = 0;
    auto* header = reinterpret_cast<std::int32_t*>(slot.send + r * shape.blockBytes());
    for (int e = 0; e < local; ++e) {
      header[e] = counts[r * local + e];
      next[r * local + e] = total;
      total += counts[r * local + e];
    }
    batch.sendOffsets[r] = r * shape.blockBytes();
    batch.sendBytes[r] = shape.headerBytes() + static_cast<std::size_t>(total) * msgBytes;
    if (r != me) out.bytesSent += shape.headerBytes() + total * (msgBytes - 4 /* index */);
  }
  const bool int8 = isInt8(in.quant);
  const int group = quantGroupSize(in.quant, H), numSc = int8 ? H / group : 0;
  const std::size_t payload = int8 ? H + sizeof(float) * numSc : 2 * static_cast<std::size_t>(H);
  std::vector<std::byte> quantised(int8 ? payload : 0);
  for (int t = 0; t < N; ++t) {
    const Bf16* xt = in.x + static_cast<std::size_t>(t) * H;
    if (int8) {
      quantizeInt8(xt, H, group, reinterpret_cast<std::int8_t*>(quantised.data()),
                   reinterpret_cast<float*>(quantised.data() + H));
    }
    const void* src = int8 ? static_cast<const void*>(quantised.data()) : xt;
    for (int k = 0; k < K; ++k) {
      const std::size_t m = static_cast<std::size_t>(t) * K + k;
      const std::int64_t e = in.topkIdx[m];
      if (e < 0) continue;
      const int dest = static_cast<int>(e / local);
      const std::int32_t pos = next[e]++;
      slot.msgDest[m] = dest;
      slot.msgPos[m] = pos;
      std::byte* msg = slot.send + dest * shape.blockBytes() + shape.headerBytes() + pos * msgBytes;
      std::memcpy(msg, src, payload);
      std::memcpy(msg + payload, &t, sizeof t);
    }
  }
  ll->transport().send(channelOf(index, false), std::move(batch));
  slot.pending = LlSlot::Pending::kDispatch;

  out.numLocalExperts = local;
  out.numRanks = R;
  out.maxTokens = T;
  out.hidden = H;
  out.numScales = numSc;
  out.quant = in.quant;
  out.recvX = (!int8 || in.dequantize) ? slot.recvX : nullptr;
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

void Buffer::lowLatencyCombine(const LowLatencyCombineInputs& in, LowLatencyCombineOutputs& out) {
  BufferState& s = *state_;
  Communicator& comm = s.comm;
  const int R = comm.size();
  Agreement agreement(kCombineOp);
  LowLatencyState* ll = s.lowLatency.get();
  const LowLatencyHandle& h = in.handle;
  LlSlot* slot = nullptr;
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
    if (!in.zeroCopy && !in.x && ll->shape().numLocal() > 0) agreement.fail("x is null");
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
  agreement.agree(comm);

  const LlShape& sh = ll->shape();
  const int local = sh.numLocal(), H = sh.hidden;
  const Bf16* x = in.zeroCopy ? slot->combineBuffer : in.x;
  LlBatch batch;
  batch.send = slot->send;
  batch.recv = slot->recv;
  batch.recvCapacity = sh.blockBytes();
  batch.sendBytes.resize(R);
  batch.sendOffsets.resize(R);
  out.bytesSent = 0;
  const std::size_t rowBytes = 2 * static_cast<std::size_t>(H);
  for (int src = 0; src < R; ++src) {
    std::byte* block = slot->send + src * sh.blockBytes();
    std::size_t bytes = 0;
    for (int e = 0; e < local; ++e) {
      const std::int64_t range = slot->layoutRange[e * R + src];
      const std::size_t begin = static_cast<std::size_t>(range >> 32);
      const std::size_t count = static_cast<std::size_t>(range & 0xffffffff);
      std::memcpy(block + bytes, x + (e * sh.rowsPerExpert() + begin) * H, count * rowBytes);
      bytes += count * rowBytes;
    }
    batch.sendOffsets[src] = src * sh.blockBytes();
    batch.sendBytes[src] = bytes;
    if (src != comm.rank()) out.bytesSent += bytes;
  }
  ll->transport().send(channelOf(h.slot, true), std::move(batch));
  slot->pending = LlSlot::Pending::kCombine;
  slot->combineOut = in.out ? in.out : slot->combined;
  out.combinedX = slot->combineOut;
  out.numTokens = slot->numTokens;
  out.hook = nullptr;
  BufferState* state = state_.get();
  const int index = h.slot;
  const std::uint64_t seq = h.sequence;
  const float* weights = in.topkWeights;
  if (in.returnRecvHook) {
    out.hook = [state, index, seq, weights] { receiveCombine(*state, index, seq, weights); };
  } else {
    receiveCombine(s, index, seq, weights);
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
