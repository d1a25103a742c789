#include "comm/types.h"

namespace epcomm {

bool isValid(DataType dtype) {
  return dtypeSize(dtype) != 0;
}

bool isValid(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kProd:
    case ReduceOp::kMax:
    case ReduceOp::kMin:
    case ReduceOp::kAvg: return true;
  }
  return false;
}

bool isFloatingPoint(DataType dtype) {
  return dtype == DataType::kF32 || dtype == DataType::kF16 || dtype == DataType::kBf16;
}

std::optional<DataType> parseDataType(std::string_view name) {
  for (DataType d : kAllDataTypes) {
    if (toString(d) == name) return d;
  }
  // NCCL's and PyTorch's names.
  if (name == "float" || name == "float32" || name == "fp32") return DataType::kF32;
  if (name == "half" || name == "float16" || name == "fp16") return DataType::kF16;
  if (name == "bfloat16" || name == "bfloat") return DataType::kBf16;
  if (name == "int32" || name == "int") return DataType::kI32;
  if (name == "char") return DataType::kI8;
  if (name == "int64") return DataType::kI64;
  if (name == "int8") return DataType::kI8;
  if (name == "uint8") return DataType::kU8;
  return std::nullopt;
}

std::optional<ReduceOp> parseReduceOp(std::string_view name) {
  for (ReduceOp o : kAllReduceOps) {
    if (toString(o) == name) return o;
  }
  return std::nullopt;
}

}  // namespace epcomm
