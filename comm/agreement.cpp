// Communicator::agree(CallAgreement&): the one cross-rank agreement (comm/agreement.h).
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "comm/agreement.h"
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
  // Reduced with max, one fixed size on every rank: [failed, call id, ~call id, (v, ~v) per
  // same value (unused: 0, ~0), maxima (unused: 0)] (~x orders in reverse, so the max of ~v
  // gives the min of v without overflow).
  const std::size_t nSame = a.same_.size();
  constexpr std::size_t kSlots = 3 + 2 * CallAgreement::kMaxSame + CallAgreement::kMaxMaxima;
  std::int64_t v[kSlots] = {};
  for (std::size_t i = 0; i < CallAgreement::kMaxSame; ++i) v[4 + 2 * i] = ~std::int64_t{0};
  v[0] = a.ok() ? 0 : 1;
  v[1] = a.callId_;
  v[2] = ~a.callId_;
  for (std::size_t i = 0; i < nSame; ++i) {
    v[3 + 2 * i] = a.same_[i].value;
    v[4 + 2 * i] = ~a.same_[i].value;
  }
  constexpr std::size_t kMaximaAt = 3 + 2 * CallAgreement::kMaxSame;
  std::copy(a.maxima_.begin(), a.maxima_.end(), v + kMaximaAt);
  run(op, [&] {
    backend_->allReduce(v, v, kSlots, static_cast<int>(DataType::kI64),
                        static_cast<int>(ReduceOp::kMax));
  });

  if (v[0] != 0) {
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
      what += r == rank_ ? std::string(m) : "rank " + std::to_string(r) + ": " + m;
    }
    throwError(ErrorCode::kInvalidArgument, rank_, op, what + "; no data was moved");
  }
  if (v[1] != ~v[2]) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "ranks called different collectives at the same point (this rank called " + a.op_ +
                   "); no data was moved");
  }
  for (std::size_t i = 0; i < nSame; ++i) {
    const std::int64_t hi = v[3 + 2 * i], lo = ~v[4 + 2 * i];
    if (hi == lo) continue;
    const std::string name = a.same_[i].name;
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "ranks disagree on " + name + ": " + name + " differs across ranks (this rank " +
                   std::to_string(a.same_[i].value) + ", smallest " + std::to_string(lo) +
                   ", largest " + std::to_string(hi) +
                   "); every rank must pass the same; no data was moved");
  }
  std::copy(v + kMaximaAt, v + kMaximaAt + a.maxima_.size(), a.maxima_.begin());
}

}  // namespace epcomm
