// Data types and reduction operators of the communicator. Numeric values follow NCCL's
// (ncclDataType_t, ncclRedOp_t) so the C API can cast them without a table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "export.h"

namespace epcomm {

enum class DataType : int {
  kI8 = 0,
  kU8 = 1,
  kI32 = 2,
  kI64 = 4,
  kF16 = 6,
  kF32 = 7,
  kBf16 = 9,
};

enum class ReduceOp : int {
  kSum = 0,
  kProd = 1,
  kMax = 2,
  kMin = 3,
  kAvg = 4,
};

inline constexpr DataType kAllDataTypes[] = {DataType::kF32, DataType::kBf16, DataType::kF16,
                                             DataType::kI32, DataType::kI64,  DataType::kI8,
                                             DataType::kU8};
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMax,
                                             ReduceOp::kMin, ReduceOp::kAvg};

// True for the values above; anything else (for example a cast from a bad C int) is not.
EPCOMM_API bool isValid(DataType dtype);
EPCOMM_API bool isValid(ReduceOp op);
// Bytes per element; 0 for an invalid type. Inline: backend plugins use it without
// importing anything from libepcomm.
constexpr std::size_t dtypeSize(DataType dtype) {
  switch (dtype) {
    case DataType::kI8:
    case DataType::kU8: return 1;
    case DataType::kF16:
    case DataType::kBf16: return 2;
    case DataType::kI32:
    case DataType::kF32: return 4;
    case DataType::kI64: return 8;
  }
  return 0;
}
EPCOMM_API bool isFloatingPoint(DataType dtype);
// Short names used by programs and messages: f32 bf16 f16 i32 i64 i8 u8; sum prod max min avg
// ("invalid-dtype" / "invalid-op" for other values). Inline: plugins use them too.
constexpr std::string_view toString(DataType dtype) {
  switch (dtype) {
    case DataType::kI8: return "i8";
    case DataType::kU8: return "u8";
    case DataType::kI32: return "i32";
    case DataType::kI64: return "i64";
    case DataType::kF16: return "f16";
    case DataType::kF32: return "f32";
    case DataType::kBf16: return "bf16";
  }
  return "invalid-dtype";
}

constexpr std::string_view toString(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kProd: return "prod";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kAvg: return "avg";
  }
  return "invalid-op";
}

EPCOMM_API std::optional<DataType> parseDataType(std::string_view name);
EPCOMM_API std::optional<ReduceOp> parseReduceOp(std::string_view name);

}  // namespace epcomm
