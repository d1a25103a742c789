// The portable reduction loops for every type, behind kernels::reduce (reduce.h).
#include "comm/kernels/reduce.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "comm/half.h"

namespace epcomm::kernels {
namespace {

// Elements per block: the accumulator stays in L1 while every source streams past it.
constexpr std::size_t kBlock = 2048;

struct Sum {
  template <typename T>
  static T apply(T a, T b) {
    return static_cast<T>(a + b);
  }
};
struct Prod {
  template <typename T>
  static T apply(T a, T b) {
    return static_cast<T>(a * b);
  }
};
struct Max {
  template <typename T>
  static T apply(T a, T b) {
    return a > b ? a : b;
  }
};
struct Min {
  template <typename T>
  static T apply(T a, T b) {
    return a < b ? a : b;
  }
};

template <typename T>
void divide(T* p, std::size_t n, int divisor) {
  if constexpr (std::is_floating_point_v<T>) {
    const T d = static_cast<T>(divisor);
    for (std::size_t i = 0; i < n; ++i) p[i] = p[i] / d;
  } else {
    const auto d = static_cast<std::int64_t>(divisor);
    for (std::size_t i = 0; i < n; ++i) {
      p[i] = static_cast<T>(static_cast<std::int64_t>(p[i]) / d);
    }
  }
}

// Types the CPU computes in directly. A block is accumulated apart and stored once, so dst
// may be one of the sources.
template <typename T, typename Op>
void reduceNative(T* dst, const void* const* srcs, int n, std::size_t count, bool avg,
                  int divisor) {
  alignas(64) T acc[kBlock];
  for (std::size_t b = 0; b < count; b += kBlock) {
    const std::size_t m = count - b < kBlock ? count - b : kBlock;
    std::memcpy(acc, static_cast<const T*>(srcs[0]) + b, m * sizeof(T));
    for (int j = 1; j < n; ++j) {
      const T* __restrict s = static_cast<const T*>(srcs[j]) + b;
      for (std::size_t i = 0; i < m; ++i) acc[i] = Op::apply(acc[i], s[i]);
    }
    if (avg) divide(acc, m, divisor);
    std::memcpy(dst + b, acc, m * sizeof(T));
  }
}

inline void widen(const std::uint16_t* __restrict s, float* __restrict f, std::size_t m, Bf16) {
  for (std::size_t i = 0; i < m; ++i) f[i] = toFloat(Bf16{s[i]});
}
inline void widen(const std::uint16_t* __restrict s, float* __restrict f, std::size_t m, F16) {
  for (std::size_t i = 0; i < m; ++i) f[i] = toFloat(F16{s[i]});
}
inline void narrow(const float* __restrict f, std::uint16_t* __restrict d, std::size_t m, Bf16) {
  for (std::size_t i = 0; i < m; ++i) d[i] = toBf16(f[i]).bits;
}
inline void narrow(const float* __restrict f, std::uint16_t* __restrict d, std::size_t m, F16) {
  for (std::size_t i = 0; i < m; ++i) d[i] = toF16(f[i]).bits;
}

// bf16 / f16: accumulate a block in f32, round once.
template <typename H, typename Op>
void reduceHalf(std::uint16_t* dst, const void* const* srcs, int n, std::size_t count, bool avg,
                int divisor) {
  alignas(64) float acc[kBlock];
  alignas(64) float in[kBlock];
  for (std::size_t b = 0; b < count; b += kBlock) {
    const std::size_t m = count - b < kBlock ? count - b : kBlock;
    widen(static_cast<const std::uint16_t*>(srcs[0]) + b, acc, m, H{});
    for (int j = 1; j < n; ++j) {
      widen(static_cast<const std::uint16_t*>(srcs[j]) + b, in, m, H{});
      for (std::size_t i = 0; i < m; ++i) acc[i] = Op::apply(acc[i], in[i]);
    }
    if (avg) divide(acc, m, divisor);
    narrow(acc, dst + b, m, H{});
  }
}

template <typename Op>
void reduceOp(void* dst, const void* const* srcs, int n, std::size_t count, DataType dtype,
              bool avg, int divisor) {
  switch (dtype) {
    case DataType::kF32:
      reduceNative<float, Op>(static_cast<float*>(dst), srcs, n, count, avg, divisor);
      break;
    case DataType::kI32:
      reduceNative<std::int32_t, Op>(static_cast<std::int32_t*>(dst), srcs, n, count, avg, divisor);
      break;
    case DataType::kI64:
      reduceNative<std::int64_t, Op>(static_cast<std::int64_t*>(dst), srcs, n, count, avg, divisor);
      break;
    case DataType::kI8:
      reduceNative<std::int8_t, Op>(static_cast<std::int8_t*>(dst), srcs, n, count, avg, divisor);
      break;
    case DataType::kU8:
      reduceNative<std::uint8_t, Op>(static_cast<std::uint8_t*>(dst), srcs, n, count, avg, divisor);
      break;
    case DataType::kBf16:
      reduceHalf<Bf16, Op>(static_cast<std::uint16_t*>(dst), srcs, n, count, avg, divisor);
      break;
    case DataType::kF16:
      reduceHalf<F16, Op>(static_cast<std::uint16_t*>(dst), srcs, n, count, avg, divisor);
      break;
  }
}

}  // namespace

void reduce(Isa isa, void* dst, const void* const* srcs, int n, std::size_t count,
            DataType dtype, ReduceOp op, int divisor) {
  if (count == 0) return;
  if (reduceVector(isa, dst, srcs, n, count, dtype, op, divisor)) return;
  switch (op) {
    case ReduceOp::kSum: reduceOp<Sum>(dst, srcs, n, count, dtype, false, divisor); break;
    case ReduceOp::kAvg: reduceOp<Sum>(dst, srcs, n, count, dtype, true, divisor); break;
    case ReduceOp::kProd: reduceOp<Prod>(dst, srcs, n, count, dtype, false, divisor); break;
    case ReduceOp::kMax: reduceOp<Max>(dst, srcs, n, count, dtype, false, divisor); break;
    case ReduceOp::kMin: reduceOp<Min>(dst, srcs, n, count, dtype, false, divisor); break;
  }
}

}  // namespace epcomm::kernels
