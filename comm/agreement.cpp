// Communicator::agree(CallAgreement&): the one cross-rank agreement (comm/agreement.h).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/agreement.h"
#include "comm/agreement_record.h"
#include "comm/communicator.h"
#include "comm/src/backend_handle.h"

namespace epcomm {
namespace {

constexpr std::size_t kMessageBytes = 240;  // per rank, in the failure path only

}  // namespace

std::int64_t CallAgreement::callIdOf(std::string_view op) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : op) h = (h ^ c) * 1099511628211ull;
  return static_cast<std::int64_t>(h >> 2);
}

CallAgreement::CallAgreement(std::string op) : op_(std::move(op)), callId_(callIdOf(op_)) {}

void CallAgreement::same(const char* name, std::int64_t value) {
  if (same_.size() == kMaxSame) {
    throwError(ErrorCode::kInternal, -1, op_, "more than kMaxSame agreed values");
  }
  same_.push_back({name, value});
}

int CallAgreement::max(std::int64_t value) {
  if (maxima_.size() == kMaxMaxima) {
    throwError(ErrorCode::kInternal, -1, op_, "more than kMaxMaxima agreed maxima");
  }
  maxima_.push_back(value);
  return static_cast<int>(maxima_.size()) - 1;
}

void Communicator::agree(CallAgreement& a) {
  const char* op = a.op_.c_str();
  checkUsable(op);
  if (size_ == 1) {
    if (!a.ok()) throwError(ErrorCode::kInvalidArgument, rank_, op, a.problem());
    return;
  }
  // One fixed size on every rank (comm/agreement_record.h), reduced with max.
  constexpr std::size_t kSlots =
      AgreementRecord::slotsFor(CallAgreement::kMaxSame, CallAgreement::kMaxMaxima);
  std::int64_t v[kSlots] = {};
  AgreementRecord record(v, CallAgreement::kMaxSame, CallAgreement::kMaxMaxima);
  record.fill(rank_, a.ok(), a.callId_);
  for (std::size_t i = 0; i < a.same_.size(); ++i) record.setSame(i, a.same_[i].value);
  for (std::size_t j = 0; j < a.maxima_.size(); ++j) record.setMax(j, a.maxima_[j]);
  run(op, [&] {
    backend_->allReduce(v, v, kSlots, static_cast<int>(DataType::kI64),
                        static_cast<int>(ReduceOp::kMax));
  });

  if (record.failedRank() >= 0) {
    // Every rank takes this path: gather each rank's message so all can report them.
    std::vector<char> mine(kMessageBytes, 0), all(kMessageBytes * size_, 0);
    std::memcpy(mine.data(), a.problem_.data(), std::min(a.problem_.size(), kMessageBytes - 1));
    run(op, [&] {
      backend_->allGather(mine.data(), all.data(), kMessageBytes, static_cast<int>(DataType::kI8));
    });
    std::string what;
    for (int r = 0; r < size_; ++r) {
      const char* m = all.data() + r * kMessageBytes;
      if (*m == 0) continue;
      if (!what.empty()) what += "; ";
      what += r == rank_ ? std::string(m) : fmt::format("rank {}: {}", r, m);
    }
    throwError(ErrorCode::kInvalidArgument, rank_, op, what + "; no data was moved");
  }
  if (!record.sameCall()) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               AgreementRecord::differentCallMessage(a.op_));
  }
  for (std::size_t i = 0; i < a.same_.size(); ++i) {
    if (record.agrees(i)) continue;
    const CallAgreement::Same& same = a.same_[i];
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               AgreementRecord::disagreeMessage(same.name, std::to_string(same.value),
                                                record.smallest(i), record.largest(i)));
  }
  for (std::size_t j = 0; j < a.maxima_.size(); ++j) a.maxima_[j] = record.maxOf(j);
}

}  // namespace epcomm
