// Local validation of a call's arguments. Collects the first problem as text ("" = valid);
// the Communicator turns it into an error on every rank (EPCOMM_CHECK_ARGS) or this one.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>

#include "comm/types.h"

namespace epcomm {

class ArgumentCheck {
 public:
  void dtype(DataType d);
  void op(ReduceOp o);
  // A buffer of `count` elements of `elementBytes` (0 when the dtype is bad: skipped).
  void buffer(const void* p, std::size_t count, std::size_t elementBytes, const char* name);
  void rank(int r, int size, const char* name);
  // A count or displacement within the backend's per-call limit (maxCountPerCall).
  void limit(std::size_t n, std::size_t max, const char* name);
  // Records `problem` when condition is false. Messages are built only on failure: pass a
  // literal, or a callable returning the message.
  void that(bool condition, const char* problem) {
    if (!condition && problem_.empty()) problem_ = problem;
  }
  template <typename MakeProblem>
  requires std::invocable<MakeProblem>
  void that(bool condition, MakeProblem&& make) {
    if (!condition && problem_.empty()) problem_ = make();
  }

  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }

 private:
  std::string problem_;
};

// Order-sensitive FNV-1a mixing, so ranks can compare names and arrays in one all-reduce:
// h = fnvMix(h, v) for each value, starting from kFnvOffset.
inline constexpr std::uint64_t kFnvOffset = 1469598103934665603ull;
inline constexpr std::uint64_t fnvMix(std::uint64_t h, std::uint64_t v) {
  return (h ^ v) * 1099511628211ull;
}

// True when [a, a+aBytes) and [b, b+bBytes) share a byte.
bool overlaps(const void* a, std::size_t aBytes, const void* b, std::size_t bBytes);

}  // namespace epcomm
