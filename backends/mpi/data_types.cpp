#include "backends/mpi/data_types.h"

#include <cstdint>
#include <type_traits>

#include <string>

#include "comm/error.h"
#include "comm/half.h"

namespace epcomm::mpi {
namespace {

// Divides in a type wide enough for any rank count (an i8 or u8 divisor would wrap).
template <typename T>
void divideAll(void* buf, std::size_t n, int divisor) {
  using Wide = std::conditional_t<std::is_floating_point_v<T>, T, std::int64_t>;
  auto* p = static_cast<T*>(buf);
  for (std::size_t i = 0; i < n; ++i) {
    p[i] = static_cast<T>(static_cast<Wide>(p[i]) / static_cast<Wide>(divisor));
  }
}

// Integers combine in their unsigned type: wrapping, never undefined.
template <typename T>
T combine(T a, T b, ReduceOp op) {
  using U = typename std::conditional_t<std::is_integral_v<T>, std::make_unsigned<T>,
                                        std::type_identity<T>>::type;
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    case ReduceOp::kProd: return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
    case ReduceOp::kMax: return a > b ? a : b;
    case ReduceOp::kMin: return a < b ? a : b;
  }
  return b;
}

template <typename T>
void reduceAll(const void* in, void* inout, std::size_t n, ReduceOp op) {
  const auto* a = static_cast<const T*>(in);
  auto* b = static_cast<T*>(inout);
  for (std::size_t i = 0; i < n; ++i) b[i] = combine(a[i], b[i], op);
}

}  // namespace

void checkMpi(int rc, int rank, const char* op) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throwError(ErrorCode::kSystemError, rank, op, std::string("MPI error: ") + text);
}

MPI_Datatype mpiType(int dtype) {
  switch (dt(dtype)) {
    case DataType::kI8: return MPI_INT8_T;
    case DataType::kU8: return MPI_UINT8_T;
    case DataType::kI32: return MPI_INT32_T;
    case DataType::kI64: return MPI_INT64_T;
    case DataType::kF32: return MPI_FLOAT;
    case DataType::kF16:
    case DataType::kBf16: return MPI_UINT16_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpiOp(int op) {
  switch (static_cast<ReduceOp>(op)) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return MPI_SUM;
    case ReduceOp::kProd: return MPI_PROD;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_OP_NULL;
}

void toF32(const void* src, float* dst, std::size_t n, int dtype) {
  const auto* s = static_cast<const std::uint16_t*>(src);
  if (dt(dtype) == DataType::kBf16) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = toFloat(Bf16{s[i]});
  } else {
    for (std::size_t i = 0; i < n; ++i) dst[i] = toFloat(F16{s[i]});
  }
}

void fromF32(const float* src, void* dst, std::size_t n, int dtype) {
  auto* d = static_cast<std::uint16_t*>(dst);
  if (dt(dtype) == DataType::kBf16) {
    for (std::size_t i = 0; i < n; ++i) d[i] = toBf16(src[i]).bits;
  } else {
    for (std::size_t i = 0; i < n; ++i) d[i] = toF16(src[i]).bits;
  }
}

void divideBySize(void* buf, std::size_t n, int dtype, int size) {
  switch (dt(dtype)) {
    case DataType::kI8: divideAll<std::int8_t>(buf, n, size); break;
    case DataType::kU8: divideAll<std::uint8_t>(buf, n, size); break;
    case DataType::kI32: divideAll<std::int32_t>(buf, n, size); break;
    case DataType::kI64: divideAll<std::int64_t>(buf, n, size); break;
    case DataType::kF32:
    case DataType::kF16:
    case DataType::kBf16: divideAll<float>(buf, n, size); break;
  }
}

void reduceInto(const void* in, void* inout, std::size_t n, int dtype, int op) {
  const auto o = static_cast<ReduceOp>(op);
  switch (dt(dtype)) {
    case DataType::kI8: reduceAll<std::int8_t>(in, inout, n, o); break;
    case DataType::kU8: reduceAll<std::uint8_t>(in, inout, n, o); break;
    case DataType::kI32: reduceAll<std::int32_t>(in, inout, n, o); break;
    case DataType::kI64: reduceAll<std::int64_t>(in, inout, n, o); break;
    case DataType::kF32: reduceAll<float>(in, inout, n, o); break;
    case DataType::kF16:
    case DataType::kBf16: break;  // carried as f32
  }
}

}  // namespace epcomm::mpi
