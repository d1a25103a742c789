// Cross-rank agreement before data moves: every rank records its own problems and the
// shapes that must match, then agree() all-reduces them once (i64 max), so a bad argument
// on any rank becomes the same kind of error on every rank and nobody is left waiting in a
// collective. Only when something failed does a second collective (an all-gather of short
// messages) run, so every rank can name what the failing rank saw.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace epcomm::ep {

class Agreement {
 public:
  explicit Agreement(const char* op) : op_(op) {}

  // Records a problem of this rank (the first one is reported).
  void fail(std::string message);
  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }

  // A value every rank must pass identically.
  void same(const char* name, std::int64_t value);
  // A value whose maximum over the ranks the caller wants after agree(); returns its index.
  int max(std::int64_t value);

  // Collective. Throws kInvalidArgument on every rank when any rank failed or a `same`
  // value differs; otherwise the maxima are available.
  void agree(Communicator& comm);
  std::int64_t maxOf(int index) const { return reduced_[base() + 2 * same_.size() + index]; }

 private:
  static constexpr int base() { return 2; }

  const char* op_;
  std::string problem_;
  struct Same {
    const char* name;
    std::int64_t value;
  };
  std::vector<Same> same_;
  std::vector<std::int64_t> maxima_;
  std::vector<std::int64_t> reduced_;
};

}  // namespace epcomm::ep
