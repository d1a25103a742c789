#include "bench/coll_bench_mpi.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "comm/half.h"

namespace epcomm::bench {
namespace {

template <typename H>
H fromFloat(float f) {
  if constexpr (std::is_same_v<H, Bf16>)
    return toBf16(f);
  else
    return toF16(f);
}

template <typename H, ReduceOp kOp>
void halfReduce(void* in, void* inout, int* len, MPI_Datatype*) {
  const H* a = static_cast<const H*>(in);
  H* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = toFloat(a[i]), y = toFloat(b[i]);
    float r = x + y;
    if constexpr (kOp == ReduceOp::kProd) r = x * y;
    if constexpr (kOp == ReduceOp::kMax) r = std::max(x, y);
    if constexpr (kOp == ReduceOp::kMin) r = std::min(x, y);
    b[i] = fromFloat<H>(r);
  }
}

template <typename T>
void divideBy(void* data, std::size_t count, int ranks) {
  T* p = static_cast<T*>(data);
  if constexpr (std::is_same_v<T, Bf16> || std::is_same_v<T, F16>) {
    for (std::size_t i = 0; i < count; ++i)
      p[i] = fromFloat<T>(toFloat(p[i]) / static_cast<float>(ranks));
  } else {
    for (std::size_t i = 0; i < count; ++i) p[i] = static_cast<T>(p[i] / static_cast<T>(ranks));
  }
}

}  // namespace

MpiPeer::MpiPeer() {
  MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &ranks_);
  MPI_Type_contiguous(2, MPI_BYTE, &half_);
  MPI_Type_commit(&half_);
  // ops_: bf16 sum prod max min, then f16 sum prod max min (epcomm's ReduceOp order).
  MPI_User_function* const kHalfOps[] = {
      &halfReduce<Bf16, ReduceOp::kSum>, &halfReduce<Bf16, ReduceOp::kProd>,
      &halfReduce<Bf16, ReduceOp::kMax>, &halfReduce<Bf16, ReduceOp::kMin>,
      &halfReduce<F16, ReduceOp::kSum>,  &halfReduce<F16, ReduceOp::kProd>,
      &halfReduce<F16, ReduceOp::kMax>,  &halfReduce<F16, ReduceOp::kMin>};
  for (int i = 0; i < 8; ++i) MPI_Op_create(kHalfOps[i], 1, &ops_[i]);
}

MpiPeer::~MpiPeer() {
  for (MPI_Op& op : ops_) MPI_Op_free(&op);
  MPI_Type_free(&half_);
  MPI_Comm_free(&comm_);
}

void MpiPeer::run(const RunShape& s, void* send, void* recv, bool inPlace) {
  const int c = static_cast<int>(s.count);
  const MPI_Datatype t = type(s.dtype);
  const std::size_t bytes = s.count * dtypeSize(s.dtype);
  switch (s.collective) {
    case Collective::kAllReduce:
      MPI_Allreduce(inPlace ? MPI_IN_PLACE : send, recv, c, t, op(s), comm_);
      if (s.redop == ReduceOp::kAvg) divide(s.dtype, recv, s.count);
      break;
    case Collective::kAllGather:
      if (inPlace)
        MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, c, t, comm_);
      else
        MPI_Allgather(send, c, t, recv, c, t, comm_);
      break;
    case Collective::kReduceScatter:
      MPI_Reduce_scatter_block(inPlace ? MPI_IN_PLACE : send, recv, c, t, op(s), comm_);
      if (s.redop == ReduceOp::kAvg) divide(s.dtype, recv, s.count);
      break;
    case Collective::kBroadcast:
      if (!inPlace && rank_ == s.root) std::memcpy(recv, send, bytes);
      MPI_Bcast(recv, c, t, s.root, comm_);
      break;
    case Collective::kAllToAll:
      if (inPlace)
        MPI_Alltoall(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, c, t, comm_);
      else
        MPI_Alltoall(send, c, t, recv, c, t, comm_);
      break;
    case Collective::kSendRecv: {
      const int next = (rank_ + 1) % ranks_, prev = (rank_ + ranks_ - 1) % ranks_;
      if (inPlace)
        MPI_Sendrecv_replace(recv, c, t, next, 0, prev, 0, comm_, MPI_STATUS_IGNORE);
      else
        MPI_Sendrecv(send, c, t, next, 0, recv, c, t, prev, 0, comm_, MPI_STATUS_IGNORE);
      break;
    }
  }
}

MPI_Datatype MpiPeer::type(DataType d) const {
  switch (d) {
    case DataType::kI8: return MPI_INT8_T;
    case DataType::kU8: return MPI_UINT8_T;
    case DataType::kI32: return MPI_INT32_T;
    case DataType::kI64: return MPI_INT64_T;
    case DataType::kF32: return MPI_FLOAT;
    case DataType::kBf16:
    case DataType::kF16: return half_;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op MpiPeer::op(const RunShape& s) const {
  const int index = s.redop == ReduceOp::kAvg ? 0 : static_cast<int>(s.redop);  // avg = sum
  if (s.dtype == DataType::kBf16) return ops_[index];
  if (s.dtype == DataType::kF16) return ops_[4 + index];
  static constexpr MPI_Op kBuiltin[] = {MPI_SUM, MPI_PROD, MPI_MAX, MPI_MIN};
  return kBuiltin[index];
}

void MpiPeer::divide(DataType d, void* data, std::size_t count) const {
  switch (d) {
    case DataType::kI8: return divideBy<std::int8_t>(data, count, ranks_);
    case DataType::kU8: return divideBy<std::uint8_t>(data, count, ranks_);
    case DataType::kI32: return divideBy<std::int32_t>(data, count, ranks_);
    case DataType::kI64: return divideBy<std::int64_t>(data, count, ranks_);
    case DataType::kF32: return divideBy<float>(data, count, ranks_);
    case DataType::kBf16: return divideBy<Bf16>(data, count, ranks_);
    case DataType::kF16: return divideBy<F16>(data, count, ranks_);
  }
}

}  // namespace epcomm::bench
