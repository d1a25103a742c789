// ProcessGroupEpcomm: torch.distributed's backend "epcomm" (torch 1.13's c10d::ProcessGroup)
// over one epcomm::Communicator, on CPU tensors. Every call runs to completion before it
// returns; the Work it returns is already completed (wait() returns at once).
//
// Contract: tensors are CPU, contiguous (dense), of float32, bfloat16, float16, int32, int64,
// int8 or uint8. A tensor that is not, an unsupported reduce op (bitwise, premul-sum) or a
// list of more than one tensor is an error on every rank of a call when EPCOMM_CHECK_ARGS=1
// (default): the call still reaches the communicator with an argument it refuses, so the
// ranks agree on the failure and none waits; this rank's message names the real problem.
// Shapes and dtypes that differ across ranks are errors on every rank through the same
// agreement. Calls torch has but epcomm does not (allreduce_coalesced, recvAnysource,
// monitoredBarrier) raise torch's "does not support" error.
#pragma once

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <memory>

#include "comm/communicator.h"
#include "comm/window.h"

namespace epcomm::python {

class ProcessGroupEpcomm : public c10d::ProcessGroup {
 public:
  // Collective over the group's ranks: bootstraps through `store` (an all-gather of keys
  // under the group's prefix store); `timeout` is the deadline where EPCOMM_TIMEOUT_MS is not
  // set.
  ProcessGroupEpcomm(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                     std::chrono::milliseconds timeout);
  ~ProcessGroupEpcomm() override;

  const std::string getBackendName() const override { return "epcomm"; }
  Communicator& communicator() { return *comm_; }

  // epcomm.empty's memory: `bytes` of registered memory as a uint8 tensor (collective: every
  // rank, same size), so collectives on it take the zero-copy paths. Held until this group
  // is destroyed; allocate once and reuse.
  at::Tensor registeredBytes(std::size_t bytes);

  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                           const c10d::BroadcastOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                           const c10d::AllreduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                        const c10d::ReduceOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                           std::vector<at::Tensor>& inputs,
                                           const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                 const c10d::AllgatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                        std::vector<at::Tensor>& inputs,
                                        const c10d::GatherOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> scatter(std::vector<at::Tensor>& outputs,
                                         std::vector<std::vector<at::Tensor>>& inputs,
                                         const c10d::ScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> reduce_scatter(std::vector<at::Tensor>& outputs,
                                                std::vector<std::vector<at::Tensor>>& inputs,
                                                const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> _reduce_scatter_base(
      at::Tensor& output, at::Tensor& input, const c10d::ReduceScatterOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                               std::vector<int64_t>& outputSplits,
                                               std::vector<int64_t>& inputSplits,
                                               const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> alltoall(std::vector<at::Tensor>& outputs,
                                          std::vector<at::Tensor>& inputs,
                                          const c10d::AllToAllOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> barrier(const c10d::BarrierOptions& opts) override;
  c10::intrusive_ptr<c10d::Work> send(std::vector<at::Tensor>& tensors, int dstRank,
                                      int tag) override;
  c10::intrusive_ptr<c10d::Work> recv(std::vector<at::Tensor>& tensors, int srcRank,
                                      int tag) override;

 private:
  // allreduce and reduce: the all-reduce, written to the tensor where `keep`.
  c10::intrusive_ptr<c10d::Work> allReduceInto(std::vector<at::Tensor>& tensors,
                                               const c10d::ReduceOp& op, const char* name,
                                               bool keep, c10d::OpType type);

  std::unique_ptr<Communicator> comm_;
  // Declared after comm_: released before it.
  std::vector<std::unique_ptr<RegisteredBuffer>> registered_;
};

}  // namespace epcomm::python
