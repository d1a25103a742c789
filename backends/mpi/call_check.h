// The mpi backend's side of the cross-rank call check (EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY,
// comm/backend.h). The communicator arms a record before each collective; the collective
// settles it in one MPI_Allreduce of a fixed size (the record of comm/agreement_record.h plus
// a payload area of EPCOMM_MPI_CHECK_FOLD_BYTES), reduced by one user-defined operation:
//   - an all-reduce whose data fits the payload area travels inside that same message, so
//     the check costs no extra MPI call (settleAllReduce);
//   - every other collective sends the record alone first (settle), then its data.
// The message has one size on every rank whatever the arguments, so ranks that disagree on
// the call still meet in a well-formed MPI_Allreduce; a failed or mismatched record throws
// kInvalidArgument on every rank before any user buffer is read or written.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <cstdint>

#include "comm/backend.h"
#include "comm/call_check_message.h"

namespace epcomm::mpi {

class CallCheck {
 public:
  // foldBytes: the payload area (agreed at init: the knob is an agreed row).
  CallCheck(MPI_Comm comm, int rank, std::size_t foldBytes);
  ~CallCheck();
  CallCheck(const CallCheck&) = delete;
  CallCheck& operator=(const CallCheck&) = delete;

  void arm(const epcommCallCheck* check) { message_.arm(check); }
  bool armed() const { return message_.armed(); }

  // Settles the armed record alone (no-op when none is armed). Throws on a bad verdict.
  void settle(const char* op);
  // An armed all-reduce: settles the record and, when the data fits the payload area,
  // reduces it in the same MPI call and writes recv (avg divided by the rank count).
  // Returns false when the data did not fit: the caller runs the data all-reduce itself.
  bool settleAllReduce(const char* op, const void* send, void* recv, std::size_t count, int dtype,
                       int reduceOp, int size);

 private:
  // Runs the fixed-size all-reduce over the message and judges it; disarms.
  void exchange(const char* op);

  MPI_Comm comm_;
  int rank_;
  CallCheckMessage message_;
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
  MPI_Op op_ = MPI_OP_NULL;
};

}  // namespace epcomm::mpi
