// EpBuffer: the torch face of ep::Buffer for epcomm.deep_ep (python/epcomm/deep_ep.py keeps
// DeepEP's names, defaults and tuples; this class moves tensors in and out). Outputs are
// tensors over epcomm's memory, never copies:
//   - normal mode: the DispatchOutputs / CombineOutputs arrays, kept alive by the tensors
//     (a small pool reuses an outputs struct once no tensor refers to it, so a steady loop
//     allocates and faults nothing);
//   - low-latency mode: views into the Buffer's slot, valid as DeepEP documents (until the
//     dispatch two calls later), kept alive with the Buffer.
// Inputs must be contiguous CPU tensors of the dtype DeepEP documents; anything else is an
// error on every rank (the call reaches ep::Buffer with an argument it refuses, as the torch
// backend does, python/src/tensor_args.h).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <tuple>
#include <vector>

#include "comm/communicator.h"
#include "ep/buffer.h"

namespace epcomm::python {

// DeepEP's handle of a normal dispatch, opaque to Python apart from the tensors it shows.
struct NormalHandle {
  ep::DispatchHandle handle;
};

class EpBuffer {
 public:
  // Over `comm`: owned when `owned`, else borrowed from `lender` (held until this Buffer is
  // gone, so the communicator outlives the Buffer's windows).
  EpBuffer(Communicator* comm, std::unique_ptr<Communicator> owned,
           std::shared_ptr<void> lender = nullptr);
  ~EpBuffer();

  int rank() const { return comm_->rank(); }
  int numRanks() const { return comm_->size(); }
  int lowLatencyCapacity() const { return buffer_->config().llMaxTokens; }

  // (num_tokens_per_rank int32 [R], num_tokens_per_expert int32 [E], is_token_in_rank bool
  // [N, R]).
  std::tuple<at::Tensor, at::Tensor, at::Tensor> getDispatchLayout(const at::Tensor& topkIdx,
                                                                   int numExperts);

  struct Dispatched {
    at::Tensor recvX;                      // bf16, or int8 when x was pre-quantised
    std::optional<at::Tensor> recvScales;  // f32 [rows, hidden / 128] with int8
    std::optional<at::Tensor> recvTopkIdx, recvTopkWeights;
    std::vector<int> numRecvTokensPerExpert;
    std::shared_ptr<NormalHandle> handle;
  };
  // topkIdx / topkWeights absent with `cached`. isTokenInRank / numTokensPerExpert (DeepEP's
  // layout arguments, both or neither) are used as given, not recomputed. With xScales, x is
  // DeepEP's pre-quantised data (int8 [N, H]) and xScales its f32 [N, H / 128] scales in any
  // strides.
  Dispatched dispatch(const at::Tensor& x, const std::optional<at::Tensor>& xScales,
                      const std::optional<at::Tensor>& topkIdx,
                      const std::optional<at::Tensor>& topkWeights, int numExperts,
                      const std::shared_ptr<NormalHandle>& cached, int expertAlignment,
                      int numWorstTokens, const std::optional<at::Tensor>& isTokenInRank,
                      const std::optional<at::Tensor>& numTokensPerExpert);
  // (combined_x, combined_topk_weights or None).
  std::tuple<at::Tensor, std::optional<at::Tensor>> combine(
      const at::Tensor& x, const std::shared_ptr<NormalHandle>& handle,
      const std::optional<at::Tensor>& topkWeights);

  struct LowLatencyDispatched {
    at::Tensor recvX;                  // bf16 [L, R*T, H]; undefined with int8
    at::Tensor recvXInt8, recvScales;  // int8: [L, R*T, H], f32 [L, R*T, H/128]
    at::Tensor recvCount;              // int32 [L]
    at::Tensor srcInfo;                // int32 [L, R*T]
    at::Tensor layoutRange;            // int64 [L, R]
    ep::LowLatencyHandle handle;
    std::function<void()> hook;  // set with returnRecvHook
  };
  // maxTokens (DeepEP's num_max_dispatch_tokens_per_rank T') is at most the Buffer's capacity
  // T (EPCOMM_EP_LL_MAX_TOKENS); the outputs show R*T' rows per expert (strided views).
  LowLatencyDispatched lowLatencyDispatch(const at::Tensor& x, const at::Tensor& topkIdx,
                                          int maxTokens, int numExperts, bool int8,
                                          bool returnRecvHook);
  // (combined_x [N, H] bf16, hook or empty). `out`, when given, receives the result.
  std::tuple<at::Tensor, std::function<void()>> lowLatencyCombine(
      const std::optional<at::Tensor>& x, const at::Tensor& topkIdx, const at::Tensor& topkWeights,
      const ep::LowLatencyHandle& handle, bool zeroCopy, bool returnRecvHook,
      const std::optional<at::Tensor>& out);
  // The zero-copy combine buffer of a dispatch: bf16 [L, R*T', H] in the Buffer (T' the
  // dispatch's num_max_dispatch_tokens_per_rank; experts R*T rows apart).
  at::Tensor lowLatencyCombineBuffer(const ep::LowLatencyHandle& handle, int maxTokens);

  // The same calls as above made `iters` times in a C++ loop on the same inputs (outputs
  // kept from call to call, as ep-bench and the pools above do): seconds per iteration, for
  // measuring the Python layer's cost (bench/python/deep_ep_bench.py). Collective.
  double timeNormalDispatch(const at::Tensor& x, const at::Tensor& topkIdx,
                            const at::Tensor& topkWeights, int numExperts, int iters);
  double timeLowLatency(const at::Tensor& x, const at::Tensor& topkIdx,
                        const at::Tensor& topkWeights, int numExperts, int iters);

  // The rank prefix matrix of a dispatch: [R, R] int32, [src][dst] = rows dst received from
  // sources 0..src (DeepEP's handle[0]). Collective (one all-gather of R counts).
  at::Tensor rankPrefixMatrix(const NormalHandle& handle);

 private:
  std::shared_ptr<void> lender_;  // declared first: released last
  Communicator* comm_;
  std::unique_ptr<Communicator> owned_;
  std::unique_ptr<ep::Buffer> buffer_;
  std::vector<std::shared_ptr<ep::DispatchOutputs>> dispatchPool_;
  std::vector<std::shared_ptr<ep::CombineOutputs>> combinePool_;
  ep::DispatchOutputs timedOutputs_;  // timeNormalDispatch's, kept as ep-bench keeps its own
};

}  // namespace epcomm::python
