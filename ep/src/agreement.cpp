#include "ep/src/agreement.h"

#include <algorithm>
#include <cstring>

#include "comm/error.h"

namespace epcomm::ep {
namespace {

constexpr std::size_t kMessageBytes = 240;  // per rank, in the failure path only

}  // namespace

void Agreement::fail(std::string message) {
  if (problem_.empty()) problem_ = std::move(message);
}

void Agreement::same(const char* name, std::int64_t value) {
  same_.push_back({name, value});
}

int Agreement::max(std::int64_t value) {
  maxima_.push_back(value);
  return static_cast<int>(maxima_.size()) - 1;
}

void Agreement::agree(Communicator& comm) {
  // [failed, -first failing rank, (v, -v) per same value, maxima...], reduced with max.
  const int size = comm.size();
  std::vector<std::int64_t> v(base() + 2 * same_.size() + maxima_.size());
  v[0] = ok() ? 0 : 1;
  v[1] = ok() ? -static_cast<std::int64_t>(size) : -static_cast<std::int64_t>(comm.rank());
  for (std::size_t i = 0; i < same_.size(); ++i) {
    v[base() + 2 * i] = same_[i].value;
    v[base() + 2 * i + 1] = -same_[i].value;
  }
  std::copy(maxima_.begin(), maxima_.end(), v.begin() + base() + 2 * same_.size());
  reduced_.resize(v.size());
  comm.allReduce(v.data(), reduced_.data(), v.size(), DataType::kI64, ReduceOp::kMax);

  if (reduced_[0] != 0) {
    // Every rank takes this path: gather each rank's message so all can report them.
    std::vector<char> mine(kMessageBytes, 0), all(kMessageBytes * size, 0);
    std::memcpy(mine.data(), problem_.data(), std::min(problem_.size(), kMessageBytes - 1));
    comm.allGather(mine.data(), all.data(), kMessageBytes, DataType::kI8);
    std::string what;
    for (int r = 0; r < size; ++r) {
      const char* m = all.data() + r * kMessageBytes;
      if (*m == 0) continue;
      if (!what.empty()) what += "; ";
      what += r == comm.rank() ? std::string(m) : "rank " + std::to_string(r) + ": " + m;
    }
    throwError(ErrorCode::kInvalidArgument, comm.rank(), op_, what);
  }
  for (std::size_t i = 0; i < same_.size(); ++i) {
    const std::int64_t hi = reduced_[base() + 2 * i], lo = -reduced_[base() + 2 * i + 1];
    if (hi != lo) {
      throwError(ErrorCode::kInvalidArgument, comm.rank(), op_,
                 std::string(same_[i].name) + " differs across ranks (this rank " +
                     std::to_string(same_[i].value) + ", smallest " + std::to_string(lo) +
                     ", largest " + std::to_string(hi) + "); every rank must pass the same");
    }
  }
}

}  // namespace epcomm::ep
