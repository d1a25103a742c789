// Element access and reference values shared by the collective tests. Inputs are small
// integers chosen per op so every dtype represents inputs and results exactly (sums stay
// within |48| for up to 16 ranks, products within 2^16 of magnitude 1 or 2 factors).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "comm/half.h"
#include "comm/types.h"

namespace epcomm::test {

inline double load(const void* base, std::size_t i, DataType d) {
  switch (d) {
    case DataType::kI8: return static_cast<const std::int8_t*>(base)[i];
    case DataType::kU8: return static_cast<const std::uint8_t*>(base)[i];
    case DataType::kI32: return static_cast<const std::int32_t*>(base)[i];
    case DataType::kI64: return static_cast<double>(static_cast<const std::int64_t*>(base)[i]);
    case DataType::kF32: return static_cast<const float*>(base)[i];
    case DataType::kF16: return toFloat(static_cast<const F16*>(base)[i]);
    case DataType::kBf16: return toFloat(static_cast<const Bf16*>(base)[i]);
  }
  return NAN;
}

inline void store(void* base, std::size_t i, double v, DataType d) {
  switch (d) {
    case DataType::kI8: static_cast<std::int8_t*>(base)[i] = static_cast<std::int8_t>(v); break;
    case DataType::kU8: static_cast<std::uint8_t*>(base)[i] = static_cast<std::uint8_t>(v); break;
    case DataType::kI32: static_cast<std::int32_t*>(base)[i] = static_cast<std::int32_t>(v); break;
    case DataType::kI64: static_cast<std::int64_t*>(base)[i] = static_cast<std::int64_t>(v); break;
    case DataType::kF32: static_cast<float*>(base)[i] = static_cast<float>(v); break;
    case DataType::kF16: static_cast<F16*>(base)[i] = toF16(static_cast<float>(v)); break;
    case DataType::kBf16: static_cast<Bf16*>(base)[i] = toBf16(static_cast<float>(v)); break;
  }
}

// Input of `rank` at element i for a reduction with `op`.
inline double input(int rank, std::size_t i, ReduceOp op, DataType d) {
  const bool isUnsigned = d == DataType::kU8;
  const auto k = static_cast<std::int64_t>(i % 1021);
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return isUnsigned ? static_cast<double>((rank + k) % 4)
                        : static_cast<double>(((rank + 1) * 3 + k) % 7 - 3);
    case ReduceOp::kProd: {
      const double v = (rank + k) % 3 == 0 ? 2.0 : 1.0;
      return (!isUnsigned && (k + rank) % 5 == 0) ? -v : v;
    }
    case ReduceOp::kMax:
    case ReduceOp::kMin:
      return isUnsigned ? static_cast<double>((rank * 7 + k * 13) % 11)
                        : static_cast<double>((rank * 7 + k * 13) % 11 - 5);
  }
  return 0;
}

// The reduction of input(0..size-1, i) as the library defines it (avg: sum / size; integer
// avg truncates toward zero), rounded to the dtype.
inline double expected(int size, std::size_t i, ReduceOp op, DataType d) {
  double acc = input(0, i, op, d);
  for (int r = 1; r < size; ++r) {
    const double v = input(r, i, op, d);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc += v; break;
      case ReduceOp::kProd: acc *= v; break;
      case ReduceOp::kMax: acc = std::max(acc, v); break;
      case ReduceOp::kMin: acc = std::min(acc, v); break;
    }
  }
  if (op == ReduceOp::kAvg) acc = isFloatingPoint(d) ? acc / size : std::trunc(acc / size);
  std::uint64_t slot = 0;
  store(&slot, 0, acc, d);
  return load(&slot, 0, d);
}

// Equality up to the rounding an avg may add (exact for every other case).
inline bool close(double got, double want, DataType d, ReduceOp op) {
  if (got == want) return true;
  if (op != ReduceOp::kAvg || !isFloatingPoint(d)) return false;
  const double tol = d == DataType::kBf16 ? 1e-2 : (d == DataType::kF16 ? 1e-3 : 1e-6);
  return std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want));
}

// A value that identifies (rank, i) for data-movement collectives; exact in every dtype.
inline double tag(int rank, std::size_t i, DataType d) {
  const auto k = static_cast<std::int64_t>(i % 97);
  return dtypeSize(d) <= 2 ? static_cast<double>((rank * 31 + k) % 100)
                           : static_cast<double>(rank * 1000 + k);
}

// Element counts of the size classes: 0, 1, odd, small but many cache lines (255: 255 B to
// 2 KiB, the shm backend's line mode and one-shot), not a multiple of the vector width, and
// large (bigger than a 1 MiB EPCOMM_BUFFSIZE for 4-byte types).
inline const std::vector<std::size_t>& sizeClasses() {
  static const std::vector<std::size_t> kSizes = {0, 1, 7, 255, 1027, 262147};
  return kSizes;
}

}  // namespace epcomm::test
