#include "python/src/tensor_args.h"

#include <fmt/format.h>

namespace epcomm::python {

bool toDataType(at::ScalarType type, DataType& out) {
  switch (type) {
    case at::kFloat: out = DataType::kF32; return true;
    case at::kBFloat16: out = DataType::kBf16; return true;
    case at::kHalf: out = DataType::kF16; return true;
    case at::kInt: out = DataType::kI32; return true;
    case at::kLong: out = DataType::kI64; return true;
    case at::kChar: out = DataType::kI8; return true;
    case at::kByte: out = DataType::kU8; return true;
    default: return false;
  }
}

std::string placementProblem(const at::Tensor& t, const char* what) {
  if (!t.defined()) return fmt::format("{} is missing", what);
  if (!t.device().is_cpu()) {
    return fmt::format("{} is on {}; epcomm takes CPU tensors", what, t.device().str());
  }
  if (t.is_sparse() || !t.is_contiguous()) {
    return fmt::format("{} is not contiguous; pass tensor.contiguous()", what);
  }
  return {};
}

TensorArg Call::tensor(const at::Tensor& t, const char* what) {
  TensorArg arg;
  if (std::string p = placementProblem(t, what); !p.empty()) {
    require(false, p);
    return arg;
  }
  DataType dtype{};
  if (!toDataType(t.scalar_type(), dtype)) {
    require(false, std::string(what) + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                       ", which the epcomm backend does not carry (float32, bfloat16, float16, "
                       "int32, int64, int8, uint8)");
    return arg;
  }
  arg.data = t.data_ptr();
  arg.count = static_cast<std::size_t>(t.numel());
  arg.dtype = dtype;
  arg.valid = true;
  return arg;
}

TensorArg Call::single(const std::vector<at::Tensor>& tensors) {
  if (tensors.size() != 1) {
    require(false, fmt::format("expects a list of exactly one tensor, got {}", tensors.size()));
    return {};
  }
  return tensor(tensors[0], "the tensor");
}

ReduceOp Call::reduceOp(const c10d::ReduceOp& op) {
  switch (op.op_) {
    case c10d::ReduceOp::SUM: return ReduceOp::kSum;
    case c10d::ReduceOp::AVG: return ReduceOp::kAvg;
    case c10d::ReduceOp::PRODUCT: return ReduceOp::kProd;
    case c10d::ReduceOp::MIN: return ReduceOp::kMin;
    case c10d::ReduceOp::MAX: return ReduceOp::kMax;
    default:
      require(false, fmt::format("reduce op {} (bitwise or premul-sum) is not supported by the "
                                 "epcomm backend; use SUM, PRODUCT, MIN, MAX or AVG",
                                 static_cast<int>(op.op_)));
      return ReduceOp::kSum;
  }
}

void Call::raiseLocal() const {
  if (ok()) return;
  throwError(ErrorCode::kInvalidArgument, comm_.rank(), op_, problem_);
}

}  // namespace epcomm::python
