#include "bench/bench_check.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "comm/half.h"

namespace epcomm::bench {
namespace {

// Storage type <-> double for every data type (exact for the values used here).
template <typename T>
double toDouble(T v) {
  if constexpr (std::is_same_v<T, Bf16> || std::is_same_v<T, F16>) {
    return static_cast<double>(toFloat(v));
  } else {
    return static_cast<double>(v);
  }
}

template <typename T>
T fromDouble(double v) {
  if constexpr (std::is_same_v<T, Bf16>) {
    return toBf16(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, F16>) {
    return toF16(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Calls fn.template operator()<T>() with T the storage type of dtype.
template <typename Fn>
decltype(auto) visit(DataType dtype, Fn&& fn) {
  switch (dtype) {
    case DataType::kI8: return fn.template operator()<std::int8_t>();
    case DataType::kU8: return fn.template operator()<std::uint8_t>();
    case DataType::kI32: return fn.template operator()<std::int32_t>();
    case DataType::kI64: return fn.template operator()<std::int64_t>();
    case DataType::kF16: return fn.template operator()<F16>();
    case DataType::kBf16: return fn.template operator()<Bf16>();
    case DataType::kF32: break;
  }
  return fn.template operator()<float>();
}

// Input of a reduction on `rank` at global element `index`.
double reductionValue(ReduceOp op, int ranks, int rank, std::size_t index) {
  if (op == ReduceOp::kProd) {
    // Twos on every third rank of an element, and only on ranks below 18: at most 6 twos.
    return (rank < 18 && (index + static_cast<std::size_t>(rank)) % 3 == 0) ? 2.0 : 1.0;
  }
  const std::size_t m = std::clamp<std::size_t>(128 / static_cast<std::size_t>(ranks), 2, 5);
  return static_cast<double>((static_cast<std::size_t>(rank + 1) * (index % 7 + 1) + index / 7) %
                             m);
}

// Data of a data-movement collective sent by `rank` at element `index` of its input.
double movementValue(int rank, std::size_t index) {
  return static_cast<double>((static_cast<std::size_t>(rank) * 37 + index * 11 + 1) % 101);
}

double expectedReduction(const RunShape& s, std::size_t index, bool integral) {
  double acc = reductionValue(s.redop, s.ranks, 0, index);
  for (int r = 1; r < s.ranks; ++r) {
    const double v = reductionValue(s.redop, s.ranks, r, index);
    switch (s.redop) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc += v; break;
      case ReduceOp::kProd: acc *= v; break;
      case ReduceOp::kMax: acc = std::max(acc, v); break;
      case ReduceOp::kMin: acc = std::min(acc, v); break;
    }
  }
  if (s.redop == ReduceOp::kAvg) {
    acc /= s.ranks;
    if (integral) acc = std::trunc(acc);
  }
  return acc;
}

// What element i of the rank's result must hold.
double expectedValue(const RunShape& s, std::size_t i, bool integral) {
  const std::size_t c = s.count;
  switch (s.collective) {
    case Collective::kAllReduce: return expectedReduction(s, i, integral);
    case Collective::kReduceScatter:
      return expectedReduction(s, static_cast<std::size_t>(s.rank) * c + i, integral);
    case Collective::kAllGather: return movementValue(static_cast<int>(i / c), i % c);
    case Collective::kBroadcast: return movementValue(s.root, i);
    case Collective::kAllToAll:
      // Block p came from rank p, which sent its block `rank` to us.
      return movementValue(static_cast<int>(i / c), static_cast<std::size_t>(s.rank) * c + i % c);
    case Collective::kSendRecv: return movementValue((s.rank + s.ranks - 1) % s.ranks, i);
  }
  return 0;
}

double tolerance(DataType dtype) {
  switch (dtype) {
    case DataType::kBf16: return 0x1p-7;
    case DataType::kF16: return 0x1p-10;
    case DataType::kF32: return 1e-5;
    default: return 0;
  }
}

}  // namespace

std::size_t inputCount(const RunShape& s) {
  const std::size_t n = static_cast<std::size_t>(s.ranks);
  switch (s.collective) {
    case Collective::kReduceScatter:
    case Collective::kAllToAll: return s.count * n;
    default: return s.count;
  }
}

std::size_t resultCount(const RunShape& s) {
  const std::size_t n = static_cast<std::size_t>(s.ranks);
  switch (s.collective) {
    case Collective::kAllGather:
    case Collective::kAllToAll: return s.count * n;
    default: return s.count;
  }
}

std::size_t operationBytes(const RunShape& s) {
  const std::size_t es = dtypeSize(s.dtype);
  return std::max(inputCount(s), resultCount(s)) * es;
}

double busFactor(Collective coll, int ranks) {
  const double n = ranks;
  switch (coll) {
    case Collective::kAllReduce: return 2.0 * (n - 1) / n;
    case Collective::kAllGather:
    case Collective::kReduceScatter:
    case Collective::kAllToAll: return (n - 1) / n;
    case Collective::kBroadcast:
    case Collective::kSendRecv: return 1.0;
  }
  return 1.0;
}

std::size_t callCount(Collective coll, std::size_t bytes, DataType dtype, int ranks) {
  const std::size_t count = bytes / dtypeSize(dtype);
  switch (coll) {
    case Collective::kAllGather:
    case Collective::kReduceScatter:
    case Collective::kAllToAll: return count / static_cast<std::size_t>(ranks);
    default: return count;
  }
}

void fillInput(const RunShape& s, void* input) {
  visit(s.dtype, [&]<typename T>() {
    T* p = static_cast<T*>(input);
    const std::size_t n = inputCount(s);
    const bool reduction = usesReduceOp(s.collective);
    for (std::size_t i = 0; i < n; ++i) {
      p[i] = fromDouble<T>(reduction ? reductionValue(s.redop, s.ranks, s.rank, i)
                                     : movementValue(s.rank, i));
    }
  });
}

void poison(DataType dtype, void* buffer, std::size_t count) {
  visit(dtype, [&]<typename T>() {
    const T bad = fromDouble<T>(std::is_same_v<T, std::uint8_t> ? 255.0 : -1.0);
    std::fill_n(static_cast<T*>(buffer), count, bad);
  });
}

std::size_t countWrong(const RunShape& s, const void* result) {
  return visit(s.dtype, [&]<typename T>() {
    const T* p = static_cast<const T*>(result);
    const std::size_t n = resultCount(s);
    const bool integral = !isFloatingPoint(s.dtype);
    const double tol = tolerance(s.dtype);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const double want = expectedValue(s, i, integral);
      const double got = toDouble(p[i]);
      const bool ok =
          integral ? got == want : std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want));
      if (!ok) ++wrong;
    }
    return wrong;
  });
}

}  // namespace epcomm::bench
