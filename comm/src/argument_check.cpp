#include "comm/src/argument_check.h"

#include <fmt/format.h>

#include <cstdint>
#include <limits>

namespace epcomm {

void ArgumentCheck::dtype(DataType d) {
  that(isValid(d), [&] {
    return fmt::format("unknown data type {} (valid: f32, bf16, f16, i32, i64, i8, u8)",
                       static_cast<int>(d));
  });
}

void ArgumentCheck::op(ReduceOp o) {
  that(isValid(o), [&] {
    return fmt::format("unknown reduce op {} (valid: sum, prod, max, min, avg)",
                       static_cast<int>(o));
  });
}

void ArgumentCheck::buffer(const void* p, std::size_t count, std::size_t elementBytes,
                           const char* name) {
  if (elementBytes == 0) return;
  that(count <= std::numeric_limits<std::size_t>::max() / elementBytes,
       [&] { return fmt::format("{} count {} overflows the address space", name, count); });
  that(count == 0 || p != nullptr,
       [&] { return fmt::format("{} buffer is null with count {} > 0", name, count); });
}

void ArgumentCheck::rank(int r, int size, const char* name) {
  that(r >= 0 && r < size, [&] {
    return fmt::format("{} {} is out of range (communicator size {}, valid 0..{})", name, r, size,
                       size - 1);
  });
}

void ArgumentCheck::limit(std::size_t n, std::size_t max, const char* name) {
  that(n <= max, [&] {
    return fmt::format("{} {} exceeds the backend's limit of {} elements per call; split the call",
                       name, n, max);
  });
}

bool overlaps(const void* a, std::size_t aBytes, const void* b, std::size_t bBytes) {
  if (aBytes == 0 || bBytes == 0) return false;
  const auto x = reinterpret_cast<std::uintptr_t>(a);
  const auto y = reinterpret_cast<std::uintptr_t>(b);
  return x < y + bBytes && y < x + aBytes;
}

}  // namespace epcomm
