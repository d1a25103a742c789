// Checks of torch tensors handed to epcomm, and the one way a local problem becomes an
// error on every rank: the call still reaches the communicator, with null buffers of one
// element (an argument it always refuses), so the ranks' agreement (EPCOMM_CHECK_ARGS) fails
// everywhere and no rank waits; this rank's exception then names the real problem.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/error.h"

namespace epcomm::python {

// One tensor as epcomm sees it: whole storage of a dense CPU tensor. Poisoned (data null,
// count 1) when the tensor was refused.
struct TensorArg {
  void* data = nullptr;
  std::size_t count = 1;
  DataType dtype = DataType::kF32;
  bool valid = false;
  bool ok() const { return valid; }
};

// epcomm's type for a torch dtype, or false.
bool toDataType(at::ScalarType type, DataType& out);

// What stops epcomm from reading `t` in place (undefined, not on the CPU, not dense and
// contiguous), or "" when nothing does. `what` names it in the message.
std::string placementProblem(const at::Tensor& t, const char* what);

class Call {
 public:
  Call(Communicator& comm, const char* op) : comm_(comm), op_(op) {}

  bool ok() const { return problem_.empty(); }
  void require(bool condition, const std::string& problem) {
    if (!condition && problem_.empty()) problem_ = problem;
  }
  // A tensor: CPU, contiguous, a supported dtype. `what` names it in messages.
  TensorArg tensor(const at::Tensor& t, const char* what);
  // A list that must hold exactly one tensor (torch passes lists).
  TensorArg single(const std::vector<at::Tensor>& tensors);
  // A placeholder for an argument that could not be made (the call already failed).
  TensorArg absent() {
    require(false, "invalid arguments");
    return {};
  }
  // torch's reduce op as epcomm's (sum, product, min, max, avg).
  ReduceOp reduceOp(const c10d::ReduceOp& op);

  // Runs fn(args...): as given when every check passed, else with every argument poisoned
  // (see above) and this rank's problem in the exception.
  template <typename Fn, typename... Args>
  void run(Fn&& fn, const Args&... args) {
    if (ok()) {
      fn(args...);
      return;
    }
    try {
      fn(poisoned(args)...);
    } catch (const Error&) {
    }
    raiseLocal();  // reached also if the communicator did not refuse (cannot happen)
  }
  // Throws this rank's problem, if any, without telling the other ranks (point to point).
  void raiseLocal() const;

 private:
  static TensorArg poisoned(const TensorArg&) { return {}; }

  Communicator& comm_;
  const char* op_;
  std::string problem_;
};

}  // namespace epcomm::python
