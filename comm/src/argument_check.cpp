#include "comm/src/argument_check.h"

#include <cstdint>
#include <limits>

namespace epcomm {

void ArgumentCheck::dtype(DataType d) {
  that(isValid(d), [&] {
    return "unknown data type " + std::to_string(static_cast<int>(d)) +
           " (valid: f32, bf16, f16, i32, i64, i8, u8)";
  });
}

void ArgumentCheck::op(ReduceOp o) {
  that(isValid(o), [&] {
    return "unknown reduce op " + std::to_string(static_cast<int>(o)) +
           " (valid: sum, prod, max, min, avg)";
  });
}

void ArgumentCheck::buffer(const void* p, std::size_t count, std::size_t elementBytes,
                           const char* name) {
  if (elementBytes == 0) return;
  that(count <= std::numeric_limits<std::size_t>::max() / elementBytes, [&] {
    return std::string(name) + " count " + std::to_string(count) + " overflows the address space";
  });
  that(count == 0 || p != nullptr, [&] {
    return std::string(name) + " buffer is null with count " + std::to_string(count) + " > 0";
  });
}

void ArgumentCheck::rank(int r, int size, const char* name) {
  that(r >= 0 && r < size, [&] {
    return std::string(name) + " " + std::to_string(r) + " is out of range (communicator size " +
           std::to_string(size) + ", valid 0.." + std::to_string(size - 1) + ")";
  });
}

void ArgumentCheck::limit(std::size_t n, std::size_t max, const char* name) {
  that(n <= max, [&] {
    return std::string(name) + " " + std::to_string(n) + " exceeds the backend's limit of " +
           std::to_string(max) + " elements per call; split the call";
  });
}

bool overlaps(const void* a, std::size_t aBytes, const void* b, std::size_t bBytes) {
  if (aBytes == 0 || bBytes == 0) return false;
  const auto x = reinterpret_cast<std::uintptr_t>(a);
  const auto y = reinterpret_cast<std::uintptr_t>(b);
  return x < y + bBytes && y < x + aBytes;
}

}  // namespace epcomm
