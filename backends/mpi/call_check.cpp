#include "backends/mpi/call_check.h"

#include <algorithm>
#include <cstring>

#include "backends/mpi/data_types.h"
#include "comm/agreement_record.h"
#include "comm/error.h"

namespace epcomm::mpi {
namespace {

// The record: three shapes and the payload descriptor as same values, no maxima.
constexpr std::size_t kShapes = 3;
constexpr std::size_t kDescriptor = kShapes;  // the same-value index of the descriptor
constexpr std::size_t kRecordSlots = AgreementRecord::slotsFor(kShapes + 1, 0);

// The payload descriptor of a folded all-reduce: 0 when the message carries no data, else
// 1 + count, wire dtype and op packed (count < 2^40: the payload area is small).
std::int64_t descriptor(std::size_t count, int wireDtype, int reduceOp) {
  return 1 + ((static_cast<std::int64_t>(count) << 16) | (wireDtype << 8) | reduceOp);
}

// The reduction of the whole message. A partial result carries data only while every rank
// it covers agreed on the descriptor and was valid; the payload is reduced only between two
// such, so data of ranks that disagree is never combined (the verdict fails anyway).
void reduceMessage(void* in, void* inout, int* len, MPI_Datatype* type) {
  int bytes = 0;
  MPI_Type_size(*type, &bytes);
  auto* a = static_cast<std::int64_t*>(in);
  auto* b = static_cast<std::int64_t*>(inout);
  const std::size_t slots = static_cast<std::size_t>(bytes) / sizeof(std::int64_t);
  constexpr std::size_t kDesc = 3 + 2 * kDescriptor;  // the descriptor's value slot
  for (int k = 0; k < *len; ++k, a += slots, b += slots) {
    const std::int64_t desc = a[kDesc];
    if (desc != 0 && a[0] == 0 && b[0] == 0 && b[kDesc] == desc && a[kDesc + 1] == ~desc &&
        b[kDesc + 1] == ~desc) {
      const std::int64_t packed = desc - 1;
      reduceInto(a + kRecordSlots, b + kRecordSlots, static_cast<std::size_t>(packed >> 16),
                 static_cast<int>((packed >> 8) & 0xff), static_cast<int>(packed & 0xff));
    }
    AgreementRecord::combine(a, b, kRecordSlots);
  }
}

}  // namespace

CallCheck::CallCheck(MPI_Comm comm, int rank, std::size_t foldBytes)
    : comm_(comm),
      rank_(rank),
      payloadSlots_((foldBytes + sizeof(std::int64_t) - 1) / sizeof(std::int64_t)),
      message_(kRecordSlots + payloadSlots_, 0) {
  MPI_Type_contiguous(static_cast<int>(message_.size()), MPI_INT64_T, &type_);
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

void CallCheck::arm(const epcommCallCheck* check) {
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

AgreementRecord CallCheck::fillRecord() {
  AgreementRecord record(message_.data(), kShapes + 1, 0);
  record.fill(rank_, valid_, opId_);
  for (int i = 0; i < numShapes_; ++i) record.setSame(static_cast<std::size_t>(i), shape_[i]);
  return record;
}

void CallCheck::settle(const char* op) {
  if (!armed_) return;
  fillRecord();
  exchange(op);
}

bool CallCheck::settleAllReduce(const char* op, const void* send, void* recv, std::size_t count,
                                int dtype, int reduceOp, int size) {
  if (!armed_) return false;
  const int wire = isHalf(dtype) ? static_cast<int>(DataType::kF32) : dtype;
  const std::size_t wireBytes = count * dtypeSize(dt(wire));
  const bool folds = valid_ && count > 0 && wireBytes <= payloadSlots_ * sizeof(std::int64_t);
  AgreementRecord record = fillRecord();
  if (folds) {
    record.setSame(kDescriptor, descriptor(count, wire, reduceOp));
    void* payload = message_.data() + kRecordSlots;
    if (isHalf(dtype)) {
      toF32(send, static_cast<float*>(payload), count, dtype);
    } else {
      std::memcpy(payload, send, wireBytes);
    }
  }
  exchange(op);  // throws on every rank alike when the record does not agree
  if (!folds) return false;
  void* payload = message_.data() + kRecordSlots;
  if (static_cast<ReduceOp>(reduceOp) == ReduceOp::kAvg) divideBySize(payload, count, wire, size);
  if (isHalf(dtype)) {
    fromF32(static_cast<const float*>(payload), recv, count, dtype);
  } else {
    std::memcpy(recv, payload, wireBytes);
  }
  return true;
}

void CallCheck::exchange(const char* op) {
  armed_ = false;
  checkMpi(MPI_Allreduce(MPI_IN_PLACE, message_.data(), 1, type_, op_, comm_), rank_, op);
  const AgreementRecord record(message_.data(), kShapes + 1, 0);
  if (!valid_) {
    // The communicator replaces this with the rank's own problem.
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "this rank passed invalid arguments; no data was moved");
  }
  if (record.failedRank() >= 0) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               AgreementRecord::failedMessage(record.failedRank()));
  }
  if (!record.sameCall()) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               AgreementRecord::differentCallMessage(opName_));
  }
  for (int i = 0; i < numShapes_; ++i) {
    const auto s = static_cast<std::size_t>(i);
    if (record.agrees(s)) continue;
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               AgreementRecord::disagreeMessage(shapeName_[i], std::to_string(shape_[i]),
                                                record.smallest(s), record.largest(s)));
  }
  if (!record.agrees(kDescriptor)) {
    // Only reachable when ranks agree on the shapes they name but not on the data's.
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               "ranks disagree on the all-reduce's count, data type or operation; every rank "
               "must pass the same; no data was moved");
  }
}

}  // namespace epcomm::mpi
