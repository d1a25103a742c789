#include "backends/mpi/call_check.h"

#include <algorithm>
#include <cstring>

#include "backends/mpi/data_types.h"
#include "comm/error.h"

namespace epcomm::mpi {
namespace {

// The reduction of whole messages (CallCheckMessage::combine) as an MPI op.
void reduceMessage(void* in, void* inout, int* len, MPI_Datatype* type) {
  int bytes = 0;
  MPI_Type_size(*type, &bytes);
  auto* a = static_cast<std::int64_t*>(in);
  auto* b = static_cast<std::int64_t*>(inout);
  const std::size_t slots = static_cast<std::size_t>(bytes) / sizeof(std::int64_t);
  for (int k = 0; k < *len; ++k, a += slots, b += slots) {
    CallCheckMessage::combine(
        a, b, slots,
        [](const std::int64_t* x, std::int64_t* y, std::size_t count, int wireDtype, int reduceOp) {
          reduceInto(x, y, count, wireDtype, reduceOp);
        });
  }
}

}  // namespace

CallCheck::CallCheck(MPI_Comm comm, int rank, std::size_t foldBytes)
    : comm_(comm), rank_(rank), message_(foldBytes) {
  message_.setRank(rank);
  MPI_Type_contiguous(static_cast<int>(message_.slots()), MPI_INT64_T, &type_);
  MPI_Type_commit(&type_);
  MPI_Op_create(&reduceMessage, 1, &op_);
}

CallCheck::~CallCheck() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (op_ != MPI_OP_NULL) MPI_Op_free(&op_);
  if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
}

void CallCheck::settle(const char* op) {
  if (!message_.armed()) return;
  message_.prepare();
  exchange(op);
}

bool CallCheck::settleAllReduce(const char* op, const void* send, void* recv, std::size_t count,
                                int dtype, int reduceOp, int size) {
  if (!message_.armed()) return false;
  const int wire = isHalf(dtype) ? static_cast<int>(DataType::kF32) : dtype;
  const std::size_t wireBytes = count * dtypeSize(dt(wire));
  const bool folds = message_.prepare(count, wire, reduceOp, wireBytes);
  void* payload = message_.payload();
  if (folds) {
    if (isHalf(dtype)) {
      toF32(send, static_cast<float*>(payload), count, dtype);
    } else {
      std::memcpy(payload, send, wireBytes);
    }
  }
  exchange(op);  // throws on every rank alike when the record does not agree
  if (!folds) return false;
  if (static_cast<ReduceOp>(reduceOp) == ReduceOp::kAvg) divideBySize(payload, count, wire, size);
  if (isHalf(dtype)) {
    fromF32(static_cast<const float*>(payload), recv, count, dtype);
  } else {
    std::memcpy(recv, payload, wireBytes);
  }
  return true;
}

void CallCheck::exchange(const char* op) {
  checkMpi(MPI_Allreduce(MPI_IN_PLACE, message_.data(), 1, type_, op_, comm_), rank_, op);
  message_.judge(rank_, op);
}

}  // namespace epcomm::mpi
