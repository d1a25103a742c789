// CallAgreement: the one cross-rank agreement before data moves, for every layer (the
// Communicator's collectives, ep::Buffer's calls). Every rank records its own problem and
// the values every rank must pass alike; Communicator::agree makes a problem on any rank an
// InvalidArgument error on every rank, naming what the failing rank saw, and a value that
// differs an error naming it, so no rank is left waiting in a collective. It costs one small
// all-reduce (straight to the backend, no nested check); a second collective (an all-gather
// of short messages) runs only when something failed. A backend that checks calls itself
// (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY) lets the Communicator fold its collectives'
// agreement into their first step instead.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "export.h"

namespace epcomm {

class EPCOMM_API CallAgreement {
 public:
  // At most this many `same` and `max` values: the record every rank contributes has one
  // fixed size, so ranks that reached different calls still meet in the same all-reduce.
  static constexpr int kMaxSame = 8;
  static constexpr int kMaxMaxima = 2;

  // `op` names the call in messages; ranks whose op differs called different collectives.
  explicit CallAgreement(std::string op);
  // A small stable number per call name (FNV-1a), so ranks can compare what they called.
  static std::int64_t callIdOf(std::string_view op);

  // Records a problem of this rank (the first one is reported).
  void fail(std::string problem) {
    if (problem_.empty()) problem_ = std::move(problem);
  }
  bool ok() const { return problem_.empty(); }
  const std::string& problem() const { return problem_; }
  const std::string& op() const { return op_; }

  // A value every rank must pass identically ("ranks disagree on <name>"); at most kMaxSame.
  void same(const char* name, std::int64_t value);
  // A value whose maximum over the ranks the caller wants after agreement; returns its index.
  // At most kMaxMaxima.
  int max(std::int64_t value);
  std::int64_t maxOf(int index) const { return maxima_[static_cast<std::size_t>(index)]; }

 private:
  friend class Communicator;
  struct Same {
    const char* name;
    std::int64_t value;
  };
  std::string op_;
  std::string problem_;
  std::int64_t callId_ = 0;
  std::vector<Same> same_;
  std::vector<std::int64_t> maxima_;  // this rank's values, then (after agree) the maxima
};

}  // namespace epcomm
