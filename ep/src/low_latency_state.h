// Low-latency mode state: the shape it was sized for, two alternating slots and the
// transport. A slot holds one dispatch's outputs (expert-major recvX, counts, src info,
// layout ranges), what its combine needs (where each (token, slot) message went), the
// zero-copy combine buffer, and the send/receive staging both directions share.
//
// Slot memory (one MappedArena, regions 64-byte aligned):
//   recvX      [E_local, T*R, H] bf16     recvXInt8 [E_local, T*R, H] int8
//   recvScales [E_local, T*R, H/128 or 1] f32
//   srcInfo    [E_local, T*R] i32         layoutRange [E_local, R] i64   recvCount [E_local]
//   combineBuffer [E_local, T*R, H] bf16  combined [T, H] bf16
//   send, recv: R blocks of blockBytes each
// A dispatch block: [E_local i32 counts (64-byte padded)][messages, le-major, token order];
// a message is [payload (bf16 row, or int8 row + scales)][i32 token index], 16-byte padded.
// A combine block: the rows going back, le-major, in the order they came.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "ep/low_latency.h"
#include "ep/src/ll_transport.h"
#include "ep/src/mapped_arena.h"

namespace epcomm::ep {

struct LlShape {
  int numRanks = 0;
  int maxTokens = 0;  // T
  int hidden = 0;
  int numExperts = 0;
  int numTopk = 0;
  bool operator==(const LlShape&) const = default;
  int numLocal() const { return numExperts / numRanks; }
  std::size_t rowsPerExpert() const { return static_cast<std::size_t>(maxTokens) * numRanks; }
  int maxScales() const { return hidden % 128 == 0 ? hidden / 128 : 1; }
  std::size_t messageBytes() const;  // a dispatch message, padded
  std::size_t headerBytes() const;   // a dispatch block's counts, padded
  std::size_t blockBytes() const;    // one peer's block (dispatch or combine)
};

struct LlSlot {
  enum class Pending { kNone, kDispatch, kCombine };
  MappedArena arena;
  Bf16* recvX = nullptr;
  std::int8_t* recvXInt8 = nullptr;
  float* recvScales = nullptr;
  std::int32_t* srcInfo = nullptr;
  std::int64_t* layoutRange = nullptr;
  std::int32_t* recvCount = nullptr;
  Bf16* combineBuffer = nullptr;
  Bf16* combined = nullptr;
  std::byte* send = nullptr;
  std::byte* recv = nullptr;

  std::uint64_t sequence = 0;  // 0: never used
  Pending pending = Pending::kNone;
  bool received = false;  // the dispatch's receive completed (its outputs are valid)
  // The dispatch of this slot.
  int numTokens = 0;
  int numTopk = 0;
  Quant quant = Quant::kNone;
  bool dequantize = false;
  std::vector<std::int32_t> msgDest;  // [numTokens, numTopk]: destination rank or -1
  std::vector<std::int32_t> msgPos;   // [numTokens, numTopk]: message index in that block
  // The pending combine.
  Bf16* combineOut = nullptr;
};

class LowLatencyState {
 public:
  LowLatencyState(Communicator& comm, const LlShape& shape);

  const LlShape& shape() const { return shape_; }
  std::size_t footprintBytes() const;
  bool anyPending() const;
  LlSlot& slot(int i) { return slots_[i]; }
  // The slot the next dispatch uses (alternates).
  int nextSlot() const { return next_; }
  void advance() { next_ ^= 1; }
  LlTransport& transport() { return *transport_; }

 private:
  LlShape shape_;
  LlSlot slots_[2];
  int next_ = 0;
  std::unique_ptr<LlTransport> transport_;
};

}  // namespace epcomm::ep
