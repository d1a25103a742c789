// The ucx backend's side of the cross-rank call check (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY,
// comm/backend.h): the armed record (comm/call_check_message.h) settles in one recursive-
// doubling exchange before the collective touches data; an all-reduce whose data fits
// EPCOMM_UCX_CHECK_FOLD_BYTES travels in that same exchange, so a small checked all-reduce
// costs exactly what an unchecked one does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backends/ucx/transport.h"
#include "comm/call_check_message.h"

namespace epcomm::ucx {

class CallCheck {
 public:
  CallCheck(int rank, std::size_t foldBytes) : message_(foldBytes) { message_.setRank(rank); }

  void arm(const epcommCallCheck* check) { message_.arm(check); }
  bool armed() const { return message_.armed(); }

  // Settles the armed record alone over t (no-op when none is armed); throws
  // kInvalidArgument on every rank alike on a bad verdict. rank names this rank in errors.
  void settle(Transport& t, int rank, const char* op);
  // An armed all-reduce: settles the record and, when the data fits the payload area,
  // reduces it in the same exchange and writes recv. Returns false when it did not fit (the
  // caller runs its data algorithm) or nothing was armed.
  bool settleAllReduce(Transport& t, int rank, const char* op, const Reduction& red,
                       const void* send, void* recv, std::size_t count);

 private:
  void exchange(Transport& t, const Reduction* red);

  CallCheckMessage message_;
  std::vector<std::int64_t> upper_;  // a partner's partial being combined (exchange)
};

}  // namespace epcomm::ucx
