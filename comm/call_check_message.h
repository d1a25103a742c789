// The call check a message-passing backend settles inside its own collective
// (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY, comm/backend.h): this rank's armed record
// (agreement_record.h: the call, its shapes and a payload descriptor) followed by a payload
// area in which a small all-reduce's data may travel, so the check costs no extra message.
// The backend reduces the whole message over the ranks with combine() (mpi: a user-defined
// MPI op; ucx: recursive doubling) and calls judge(). The message has one size on every rank
// whatever the arguments, so ranks that disagree still exchange well-formed messages.
// Header-only: plugins use it over the C ABI alone.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/agreement_record.h"
#include "comm/backend.h"
#include "comm/error.h"

namespace epcomm {

class CallCheckMessage {
 public:
  static constexpr std::size_t kShapes = 3;
  static constexpr std::size_t kDescriptor = kShapes;  // the same-value index of the descriptor
  static constexpr std::size_t kRecordSlots = AgreementRecord::slotsFor(kShapes + 1, 0);

  // foldBytes: the payload area (rounded up to whole int64 slots).
  explicit CallCheckMessage(std::size_t foldBytes)
      : payloadSlots_((foldBytes + sizeof(std::int64_t) - 1) / sizeof(std::int64_t)),
        message_(kRecordSlots + payloadSlots_, 0) {}

  void arm(const epcommCallCheck* check) {
    armed_ = false;
    if (!check || check->structSize < sizeof(epcommCallCheck)) return;
    armed_ = true;
    valid_ = check->valid != 0;
    opId_ = check->opId;
    opName_ = check->op ? check->op : "collective";
    numShapes_ = std::clamp(check->numShapes, 0, static_cast<int>(kShapes));
    for (int i = 0; i < numShapes_; ++i) {
      shape_[i] = check->shape[i];
      shapeName_[i] = check->shapeName[i] ? check->shapeName[i] : "a shape";
    }
  }
  bool armed() const { return armed_; }

  std::int64_t* data() { return message_.data(); }
  std::size_t slots() const { return message_.size(); }
  std::size_t bytes() const { return message_.size() * sizeof(std::int64_t); }
  void* payload() { return message_.data() + kRecordSlots; }
  std::size_t payloadBytes() const { return payloadSlots_ * sizeof(std::int64_t); }

  // Fills this rank's record. With count > 0, wireBytes fitting the payload area and this
  // rank valid, also the descriptor of an all-reduce whose data (copied into payload() by the
  // caller) travels in the message; returns whether it does.
  bool prepare(std::size_t count = 0, int wireDtype = 0, int reduceOp = 0,
               std::size_t wireBytes = 0) {
    AgreementRecord record(message_.data(), kShapes + 1, 0);
    record.fill(rank_, valid_, opId_);
    for (int i = 0; i < numShapes_; ++i) record.setSame(static_cast<std::size_t>(i), shape_[i]);
    const bool folds = valid_ && count > 0 && wireBytes <= payloadBytes();
    if (folds) record.setSame(kDescriptor, descriptor(count, wireDtype, reduceOp));
    return folds;
  }

  // inout = in combined with inout (whole messages of `slots` slots): the record by
  // element-wise max; the payload by reducePayload(in, inout, count, wireDtype, op) only while
  // both partials carry data of every rank they cover under the same descriptor, so data of
  // ranks that disagree is never combined (the verdict fails anyway). reducePayload must
  // combine `in` as the first operand where the caller's order matters.
  template <typename ReducePayload>
  static void combine(const std::int64_t* in, std::int64_t* inout, std::size_t slots,
                      ReducePayload&& reducePayload) {
    constexpr std::size_t kDesc = 3 + 2 * kDescriptor;  // the descriptor's value slot
    const std::int64_t desc = in[kDesc];
    if (slots > kRecordSlots && desc != 0 && in[0] == 0 && inout[0] == 0 && inout[kDesc] == desc &&
        in[kDesc + 1] == ~desc && inout[kDesc + 1] == ~desc) {
      const std::int64_t packed = desc - 1;
      reducePayload(in + kRecordSlots, inout + kRecordSlots, static_cast<std::size_t>(packed >> 16),
                    static_cast<int>((packed >> 8) & 0xff), static_cast<int>(packed & 0xff));
    }
    AgreementRecord::combine(in, inout, kRecordSlots);
  }

  // Judges the settled message (the same verdict on every rank): throws kInvalidArgument
  // naming the problem; disarms either way. `rank` is this rank, for messages.
  void judge(int rank, const char* op) {
    armed_ = false;
    const AgreementRecord record(message_.data(), kShapes + 1, 0);
    if (!valid_) {
      // The communicator replaces this with the rank's own problem.
      throwError(ErrorCode::kInvalidArgument, rank, op,
                 "this rank passed invalid arguments; no data was moved");
    }
    if (record.failedRank() >= 0) {
      throwError(ErrorCode::kInvalidArgument, rank, op,
                 AgreementRecord::failedMessage(record.failedRank()));
    }
    if (!record.sameCall()) {
      throwError(ErrorCode::kInvalidArgument, rank, op,
                 AgreementRecord::differentCallMessage(opName_));
    }
    for (int i = 0; i < numShapes_; ++i) {
      const auto s = static_cast<std::size_t>(i);
      if (record.agrees(s)) continue;
      throwError(ErrorCode::kInvalidArgument, rank, op,
                 AgreementRecord::disagreeMessage(shapeName_[i], std::to_string(shape_[i]),
                                                  record.smallest(s), record.largest(s)));
    }
    if (!record.agrees(kDescriptor)) {
      // Only reachable when ranks agree on the shapes they name but not on the data's.
      throwError(ErrorCode::kInvalidArgument, rank, op,
                 "ranks disagree on the all-reduce's count, data type or operation; every "
                 "rank must pass the same; no data was moved");
    }
  }

  // This rank's number in the record (set once by the backend).
  void setRank(int rank) { rank_ = rank; }

 private:
  // 0 when the message carries no data, else 1 + count, wire dtype and op packed (count <
  // 2^40: the payload area is small).
  static std::int64_t descriptor(std::size_t count, int wireDtype, int reduceOp) {
    return 1 + ((static_cast<std::int64_t>(count) << 16) | (wireDtype << 8) | reduceOp);
  }

  std::size_t payloadSlots_;
  std::vector<std::int64_t> message_;
  int rank_ = 0;
  bool armed_ = false;
  bool valid_ = true;
  std::int64_t opId_ = 0;
  int numShapes_ = 0;
  std::int64_t shape_[kShapes] = {};
  // Names for messages only: valid until the collective returns (comm/backend.h), which is
  // when they are used.
  const char* opName_ = "collective";
  const char* shapeName_[kShapes] = {};
};

}  // namespace epcomm
