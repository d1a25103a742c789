// The low-latency transport over the Communicator's collectives (any backend). Dispatch:
// pack one message per (token, expert) into the destination's block of the slot's send
// staging ([E_local i32 counts (64-byte padded)][messages, le-major, token order]; a message
// is [payload (bf16 row, or int8 row + scales)][i32 token index], 16-byte padded); receive:
// an all-to-all of block sizes and an all-to-all-v of the blocks into the slot's receive
// staging, then unpack into the expert-major outputs. Combine: pack each source's rows
// (le-major, in the order they came) and exchange them the same way; receive sums each
// token's rows times its weights. The exchange happens in the receive step, so dispatch
// with a hook only packs; every rank completes in the same order (they are collectives).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/error.h"
#include "ep/src/ll_transport.h"

namespace epcomm::ep {
namespace {

constexpr const char* kOp = "ep low-latency transport";

class CollectiveLlTransport final : public LlTransport {
 public:
  CollectiveLlTransport(Communicator& comm, const LlShape& shape) : comm_(comm), shape_(shape) {}

  std::size_t footprintBytes() const override { return 0; }
  std::size_t dispatchSend(int index, LlSlot& slot, const LowLatencyDispatchInputs& in) override {
    const LlShape& sh = shape_;
    const int R = sh.numRanks, me = comm_.rank(), local = sh.numLocal();
    const int N = in.numTokens, H = in.hidden, K = in.numTopk;
    slot.recvX = slot.arenaRecvX;
    slot.recvXInt8 = slot.arenaRecvXInt8;
    slot.recvScales = slot.arenaRecvScales;
    // Count, then place, the messages of each (destination, local expert).
    std::vector<std::int32_t> counts(static_cast<std::size_t>(R) * local, 0);
    for (std::size_t m = 0; m < slot.msgDest.size(); ++m) {
      if (in.topkIdx[m] >= 0) ++counts[in.topkIdx[m]];  // expert e = dest * local + le
    }
    std::vector<std::int32_t> next(counts.size());
    Exchange& x = exchange_[index * 2];
    x.sendBytes.assign(R, 0);
    x.sendOffsets.assign(R, 0);
    const std::size_t msgBytes = sh.messageBytes();
    std::size_t bytesSent = 0;
    for (int r = 0; r < R; ++r) {
      std::int32_t total = 0;
      auto* header = reinterpret_cast<std::int32_t*>(slot.send + r * sh.blockBytes());
      for (int e = 0; e < local; ++e) {
        header[e] = counts[r * local + e];
        next[r * local + e] = total;
        total += counts[r * local + e];
      }
      x.sendOffsets[r] = r * sh.blockBytes();
      x.sendBytes[r] = sh.headerBytes() + static_cast<std::size_t>(total) * msgBytes;
      if (r != me) bytesSent += sh.headerBytes() + total * (msgBytes - 4 /* index */);
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
        std::byte* msg = slot.send + dest * sh.blockBytes() + sh.headerBytes() + pos * msgBytes;
        std::memcpy(msg, src, payload);
        std::memcpy(msg + payload, &t, sizeof t);
      }
    }
    x.posted = true;
    return bytesSent;
  }

  void dispatchReceive(int index, LlSlot& slot) override {
    exchange(index * 2, slot);
    const std::vector<std::size_t>& recvBytes = exchange_[index * 2].recvBytes;
    const LlShape& sh = shape_;
    const int R = sh.numRanks, local = sh.numLocal(), H = sh.hidden;
    const std::size_t rowsPerExpert = sh.rowsPerExpert(), msgBytes = sh.messageBytes();
    const bool int8 = isInt8(slot.quant);
    const int group = quantGroupSize(slot.quant, H), numSc = int8 ? H / group : 0;
    const std::size_t payload = int8 ? H + sizeof(float) * numSc : 2 * static_cast<std::size_t>(H);
    std::vector<std::size_t> cursor(R, 0);  // message index in each source's block
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

  std::size_t combineSend(int index, LlSlot& slot, const Bf16* x, bool /*keepsX*/) override {
    const LlShape& sh = shape_;
    const int R = sh.numRanks, local = sh.numLocal(), H = sh.hidden;
    Exchange& xc = exchange_[index * 2 + 1];
    xc.sendBytes.assign(R, 0);
    xc.sendOffsets.assign(R, 0);
    std::size_t bytesSent = 0;
    const std::size_t rowBytes = 2 * static_cast<std::size_t>(H);
    for (int src = 0; src < R; ++src) {
      std::byte* block = slot.send + src * sh.blockBytes();
      std::size_t bytes = 0;
      for (int e = 0; e < local; ++e) {
        const std::int64_t range = slot.layoutRange[e * R + src];
        const std::size_t begin = static_cast<std::size_t>(range >> 32);
        const std::size_t count = static_cast<std::size_t>(range & 0xffffffff);
        std::memcpy(block + bytes, x + (e * sh.rowsPerExpert() + begin) * H, count * rowBytes);
        bytes += count * rowBytes;
      }
      xc.sendOffsets[src] = src * sh.blockBytes();
      xc.sendBytes[src] = bytes;
      if (src != comm_.rank()) bytesSent += bytes;
    }
    xc.posted = true;
    return bytesSent;
  }

  void combineReceive(int index, LlSlot& slot, const float* weights) override {
    exchange(index * 2 + 1, slot);
    const int H = shape_.hidden;
    sumCombinedRows(slot, H, weights, [&](std::size_t m) {
      return reinterpret_cast<const Bf16*>(slot.recv + slot.msgDest[m] * shape_.blockBytes()) +
             static_cast<std::size_t>(slot.msgPos[m]) * H;
    });
  }

 private:
  struct Exchange {
    std::vector<std::size_t> sendBytes, sendOffsets, recvBytes;
    bool posted = false;
  };

  // Block sizes (all-to-all), then the blocks (all-to-all-v) into the slot's receive staging.
  void exchange(int channel, LlSlot& slot) {
    Exchange& x = exchange_[channel];
    if (!x.posted) {
      throwError(ErrorCode::kInternal, comm_.rank(), kOp,
                 fmt::format("receive on channel {} without a send", channel));
    }
    x.posted = false;
    const int R = comm_.size();
    const std::size_t capacity = shape_.blockBytes();
    x.recvBytes.assign(R, 0);
    comm_.allToAll(x.sendBytes.data(), x.recvBytes.data(), 1, DataType::kI64);
    std::vector<std::size_t> recvDispls(R);
    for (int s = 0; s < R; ++s) {
      recvDispls[s] = static_cast<std::size_t>(s) * capacity;
      if (x.recvBytes[s] > capacity) {
        throwError(ErrorCode::kInternal, comm_.rank(), kOp,
                   fmt::format("block from rank {} exceeds its region", s));
      }
    }
    comm_.allToAllV(slot.send, x.sendBytes.data(), x.sendOffsets.data(), slot.recv,
                    x.recvBytes.data(), recvDispls.data(), DataType::kU8);
  }

  Communicator& comm_;
  LlShape shape_;
  Exchange exchange_[4];  // (slot, dispatch | combine)
};

}  // namespace

std::unique_ptr<LlTransport> makeCollectiveLlTransport(Communicator& comm, const LlShape& shape) {
  return std::make_unique<CollectiveLlTransport>(comm, shape);
}

}  // namespace epcomm::ep
