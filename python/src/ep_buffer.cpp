#include "python/src/ep_buffer.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "comm/error.h"
#include "python/src/tensor_args.h"

namespace epcomm::python {
namespace {

constexpr std::size_t kPoolSize = 4;

// A pooled outputs struct no tensor refers to any more, or a new one (pooled while the pool
// has room).
template <typename T>
std::shared_ptr<T> takeFree(std::vector<std::shared_ptr<T>>& pool) {
  for (const auto& p : pool) {
    if (p.use_count() == 1) return p;
  }
  auto made = std::make_shared<T>();
  if (pool.size() < kPoolSize) pool.push_back(made);
  return made;
}

// A tensor over `data` that keeps `owner` alive; an empty tensor when there are no elements.
template <typename Owner>
at::Tensor view(void* data, std::vector<int64_t> sizes, at::ScalarType type,
                const std::shared_ptr<Owner>& owner) {
  int64_t n = 1;
  for (int64_t s : sizes) n *= s;
  const auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  if (n == 0 || !data) return at::empty(sizes, options);
  return at::from_blob(
      data, sizes, [owner](void*) {}, options);
}

// Seconds per call of fn over `iters` calls after one warm-up call (outputs reach their
// size), the ranks starting together.
template <typename Fn>
double secondsPerCall(Communicator& comm, int iters, Fn&& fn) {
  fn();
  comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
         std::max(iters, 1);
}

// Checks one input tensor: contiguous CPU of `type` with `dims` dimensions. A problem is
// recorded in `problem` (the first wins) and the tensor is then not to be read.
bool checkTensor(const at::Tensor& t, at::ScalarType type, int dims, const char* name,
                 std::string& problem) {
  std::string p = placementProblem(t, name);
  if (p.empty() && t.scalar_type() != type) {
    p = fmt::format("{} has dtype {}, expected {}", name, c10::toString(t.scalar_type()),
                    c10::toString(type));
  } else if (p.empty() && t.dim() != dims) {
    p = fmt::format("{} has {} dimensions, expected {}", name, t.dim(), dims);
  }
  if (!p.empty() && problem.empty()) problem = p;
  return p.empty();
}

// This rank's problem as an error; called after the call's own error on every rank (or to
// replace it), so the message names what this rank did wrong.
void raise(int rank, const char* op, const std::string& problem) {
  throwError(ErrorCode::kInvalidArgument, rank, op, problem);
}

}  // namespace

EpBuffer::EpBuffer(Communicator* comm, std::unique_ptr<Communicator> owned,
                   std::shared_ptr<void> lender)
    : lender_(std::move(lender)), comm_(comm), owned_(std::move(owned)) {
  buffer_ = std::make_unique<ep::Buffer>(*comm_, ep::BufferConfig::fromConfig(comm_->config()));
}

EpBuffer::~EpBuffer() = default;

std::tuple<at::Tensor, at::Tensor, at::Tensor> EpBuffer::getDispatchLayout(
    const at::Tensor& topkIdx, int numExperts) {
  constexpr const char* kOp = "get_dispatch_layout";
  std::string problem;
  const bool ok = checkTensor(topkIdx, at::kLong, 2, "topk_idx", problem);
  ep::LayoutInputs in;
  if (ok) {
    in.topkIdx = topkIdx.data_ptr<int64_t>();
    in.numTokens = static_cast<int>(topkIdx.size(0));
    in.numTopk = static_cast<int>(topkIdx.size(1));
  } else {
    in.numTokens = -1;  // refused on every rank
  }
  in.numExperts = numExperts;
  ep::LayoutOutputs out;
  try {
    buffer_->getDispatchLayout(in, out);
  } catch (const Error&) {
    if (!ok) raise(rank(), kOp, problem);
    throw;
  }
  const int R = numRanks();
  at::Tensor perRank = at::empty({R}, at::kInt);
  at::Tensor perExpert = at::empty({numExperts}, at::kInt);
  at::Tensor inRank = at::empty({out.numTokens, R}, at::kBool);
  std::memcpy(perRank.data_ptr(), out.numTokensPerRank.data(), sizeof(int32_t) * R);
  std::memcpy(perExpert.data_ptr(), out.numTokensPerExpert.data(),
              sizeof(int32_t) * static_cast<std::size_t>(numExperts));
  if (inRank.numel()) {
    std::memcpy(inRank.data_ptr(), out.isTokenInRank.data(),
                static_cast<std::size_t>(inRank.numel()));
  }
  return {perRank, perExpert, inRank};
}

EpBuffer::Dispatched EpBuffer::dispatch(const at::Tensor& x,
                                        const std::optional<at::Tensor>& xScales,
                                        const std::optional<at::Tensor>& topkIdx,
                                        const std::optional<at::Tensor>& topkWeights,
                                        int numExperts, const std::shared_ptr<NormalHandle>& cached,
                                        int expertAlignment, int numWorstTokens,
                                        const std::optional<at::Tensor>& isTokenInRank,
                                        const std::optional<at::Tensor>& numTokensPerExpert) {
  constexpr const char* kOp = "dispatch";
  std::string problem;
  const bool preQuantised = xScales.has_value();
  bool ok = checkTensor(x, preQuantised ? at::kChar : at::kBFloat16, 2, "x", problem);
  ep::DispatchInputs in;
  in.expertAlignment = expertAlignment;
  in.numWorstTokens = numWorstTokens;
  in.quant = ep::Quant::kDefault;  // bf16, or int8 on the wire where the Buffer says so
  in.dequantize = true;            // recv_x is bf16 as the input (DeepEP)
  if (ok) {
    in.x = reinterpret_cast<const Bf16*>(x.data_ptr());
    in.numTokens = static_cast<int>(x.size(0));
    in.hidden = static_cast<int>(x.size(1));
  }
  if (ok && preQuantised) {
    // Received as sent: int8 rows and their scales (DeepEP returns the tuple it was given).
    const at::Tensor& sc = *xScales;
    ok = sc.defined() && sc.device().is_cpu() && sc.scalar_type() == at::kFloat && sc.dim() == 2 &&
         sc.size(0) == x.size(0) && x.size(1) % ep::kQuantGroup == 0 &&
         sc.size(1) == x.size(1) / ep::kQuantGroup;
    if (!ok) {
      problem = fmt::format("x's scales must be float32 [num_tokens, hidden / {}] on the CPU",
                            ep::kQuantGroup);
    } else {
      in.x = nullptr;
      in.xInt8 = x.data_ptr<int8_t>();
      in.xScales = sc.data_ptr<float>();
      in.scalesTokenStride = sc.stride(0);
      in.scalesGroupStride = sc.stride(1);
      in.quant = ep::Quant::kInt8Group;
      in.dequantize = false;
    }
  }
  if (cached) {
    in.handle = &cached->handle;
  } else {
    ok = topkIdx.has_value() && checkTensor(*topkIdx, at::kLong, 2, "topk_idx", problem) && ok;
    if (!topkIdx.has_value() && problem.empty()) problem = "topk_idx is required without handle";
    if (ok && topkIdx->size(0) != x.size(0)) {
      problem = "topk_idx and x differ in the number of tokens";
      ok = false;
    }
    if (ok) {
      in.topkIdx = topkIdx->data_ptr<int64_t>();
      in.numTopk = static_cast<int>(topkIdx->size(1));
    }
    if (ok && topkWeights.has_value()) {
      ok = checkTensor(*topkWeights, at::kFloat, 2, "topk_weights", problem) &&
           topkWeights->sizes() == topkIdx->sizes();
      if (!ok && problem.empty()) problem = "topk_weights must have topk_idx's shape";
      if (ok) in.topkWeights = topkWeights->data_ptr<float>();
    }
    in.numExperts = numExperts;
    if (ok && isTokenInRank.has_value() && numTokensPerExpert.has_value()) {
      ok = checkTensor(*isTokenInRank, at::kBool, 2, "is_token_in_rank", problem) &&
           checkTensor(*numTokensPerExpert, at::kInt, 1, "num_tokens_per_expert", problem);
      if (ok && (isTokenInRank->size(0) != x.size(0) || isTokenInRank->size(1) != numRanks() ||
                 numTokensPerExpert->size(0) != numExperts)) {
        problem =
            "is_token_in_rank must be [num_tokens, num_ranks] and num_tokens_per_expert "
            "[num_experts], as get_dispatch_layout returns them";
        ok = false;
      }
      if (ok) {
        in.isTokenInRank = static_cast<const uint8_t*>(isTokenInRank->data_ptr());
        in.numTokensPerExpert = numTokensPerExpert->data_ptr<int32_t>();
      }
    }
  }
  if (!ok) {
    in.x = nullptr;
    in.numTokens = -1;  // refused on every rank
  }
  std::shared_ptr<ep::DispatchOutputs> out = takeFree(dispatchPool_);
  try {
    buffer_->dispatch(in, *out);
  } catch (const Error&) {
    if (!ok) raise(rank(), kOp, problem);
    throw;
  }
  Dispatched d;
  const int64_t rows = numWorstTokens > 0 ? numWorstTokens : out->numRecvTokens,
                hidden = out->hidden, k = out->numTopk;
  if (preQuantised) {
    d.recvX = view(out->recvXInt8.data(), {rows, hidden}, at::kChar, out);
    d.recvScales = view(out->recvScales.data(), {rows, int64_t{out->numScales}}, at::kFloat, out);
  } else {
    d.recvX = view(out->recvX.data(), {rows, hidden}, at::kBFloat16, out);
  }
  if (!cached) {
    d.recvTopkIdx = view(out->recvTopkIdx.data(), {rows, k}, at::kLong, out);
    d.recvTopkWeights = view(out->recvTopkWeights.data(), {rows, k}, at::kFloat, out);
  }
  d.numRecvTokensPerExpert = out->numRecvTokensPerExpert;
  d.handle = std::make_shared<NormalHandle>(NormalHandle{out->handle});
  return d;
}

std::tuple<at::Tensor, std::optional<at::Tensor>> EpBuffer::combine(
    const at::Tensor& x, const std::shared_ptr<NormalHandle>& handle,
    const std::optional<at::Tensor>& topkWeights) {
  constexpr const char* kOp = "combine";
  std::string problem;
  bool ok = checkTensor(x, at::kBFloat16, 2, "x", problem);
  if (ok && !handle) {
    problem = "handle is required";
    ok = false;
  }
  ep::CombineInputs in;
  if (ok) {
    in.x = reinterpret_cast<const Bf16*>(x.data_ptr());
    in.hidden = static_cast<int>(x.size(1));
    in.handle = &handle->handle;
    if (x.size(0) < handle->handle.numRecvTokens) {
      problem = fmt::format("x has {} rows but the dispatch received {}", x.size(0),
                            handle->handle.numRecvTokens);
      ok = false;
    }
  }
  if (ok && topkWeights.has_value()) {
    ok = checkTensor(*topkWeights, at::kFloat, 2, "topk_weights", problem) &&
         topkWeights->size(0) == x.size(0);
    if (!ok && problem.empty()) problem = "topk_weights must have one row per row of x";
    if (ok) {
      in.topkWeights = topkWeights->data_ptr<float>();
      in.numTopk = static_cast<int>(topkWeights->size(1));
    }
  }
  static const ep::DispatchHandle kNoHandle{};
  if (!ok) {
    in.x = nullptr;
    in.hidden = 0;  // refused on every rank
    in.handle = &kNoHandle;
  }
  std::shared_ptr<ep::CombineOutputs> out = takeFree(combinePool_);
  try {
    buffer_->combine(in, *out);
  } catch (const Error&) {
    if (!ok) raise(rank(), kOp, problem);
    throw;
  }
  const int64_t n = out->numTokens;
  at::Tensor combined = view(out->combinedX.data(), {n, x.size(1)}, at::kBFloat16, out);
  std::optional<at::Tensor> weights;
  if (topkWeights.has_value()) {
    weights = view(out->combinedTopkWeights.data(), {n, topkWeights->size(1)}, at::kFloat, out);
  }
  return {combined, weights};
}

EpBuffer::LowLatencyDispatched EpBuffer::lowLatencyDispatch(const at::Tensor& x,
                                                            const at::Tensor& topkIdx,
                                                            int maxTokens, int numExperts,
                                                            bool int8, bool returnRecvHook) {
  constexpr const char* kOp = "low_latency_dispatch";
  std::string problem;
  bool ok = checkTensor(x, at::kBFloat16, 2, "x", problem);
  ok = checkTensor(topkIdx, at::kLong, 2, "topk_idx", problem) && ok;
  if (ok && topkIdx.size(0) != x.size(0)) {
    problem = "topk_idx and x differ in the number of tokens";
    ok = false;
  }
  if (ok && (maxTokens < 1 || maxTokens > lowLatencyCapacity())) {
    problem = fmt::format(
        "num_max_dispatch_tokens_per_rank {} is outside 1..{} (the Buffer's capacity; raise "
        "EPCOMM_EP_LL_MAX_TOKENS or SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK)",
        maxTokens, lowLatencyCapacity());
    ok = false;
  }
  if (ok && x.size(0) > maxTokens) {
    problem =
        fmt::format("{} tokens exceed num_max_dispatch_tokens_per_rank {}", x.size(0), maxTokens);
    ok = false;
  }
  ep::LowLatencyDispatchInputs in;
  in.quant = int8 ? ep::Quant::kInt8Group : ep::Quant::kNone;
  in.returnRecvHook = returnRecvHook;
  in.numExperts = numExperts;
  if (ok) {
    in.x = reinterpret_cast<const Bf16*>(x.data_ptr());
    in.numTokens = static_cast<int>(x.size(0));
    in.hidden = static_cast<int>(x.size(1));
    in.topkIdx = topkIdx.data_ptr<int64_t>();
    in.numTopk = static_cast<int>(topkIdx.size(1));
  } else {
    in.numTokens = -1;  // refused on every rank
  }
  ep::LowLatencyDispatchOutputs out;
  try {
    buffer_->lowLatencyDispatch(in, out);
  } catch (const Error&) {
    if (!ok) raise(rank(), kOp, problem);
    throw;
  }
  // Views into the Buffer's slot: they live with the Buffer (DeepEP's validity rules). The
  // slot holds capacity T rows per source and expert; the call's T' <= T shows the first
  // R * T' rows of each expert (every valid row is there: a source sends at most T').
  const int64_t L = out.numLocalExperts, H = out.hidden, R = out.numRanks,
                full = int64_t{out.maxTokens} * R, rows = int64_t{maxTokens} * R;
  const auto slot = [&](const void* p, int64_t width, at::ScalarType type) {
    return at::from_blob(const_cast<void*>(p), {L, rows, width}, {full * width, width, 1},
                         at::TensorOptions().dtype(type));
  };
  LowLatencyDispatched d;
  if (out.recvX) d.recvX = slot(out.recvX, H, at::kBFloat16);
  if (out.recvXInt8) {
    d.recvXInt8 = slot(out.recvXInt8, H, at::kChar);
    d.recvScales = slot(out.recvScales, out.numScales, at::kFloat);
  }
  d.recvCount = at::from_blob(const_cast<int32_t*>(out.recvCount), {L}, at::kInt);
  d.srcInfo = slot(out.srcInfo, 1, at::kInt).squeeze(2);
  d.layoutRange = at::from_blob(const_cast<int64_t*>(out.layoutRange), {L, R}, at::kLong);
  d.handle = out.handle;
  d.hook = std::move(out.hook);
  return d;
}

std::tuple<at::Tensor, std::function<void()>> EpBuffer::lowLatencyCombine(
    const std::optional<at::Tensor>& x, const at::Tensor& topkIdx, const at::Tensor& topkWeights,
    const ep::LowLatencyHandle& handle, bool zeroCopy, bool returnRecvHook,
    const std::optional<at::Tensor>& out) {
  constexpr const char* kOp = "low_latency_combine";
  std::string problem;
  bool ok = checkTensor(topkIdx, at::kLong, 2, "topk_idx", problem);
  ok = checkTensor(topkWeights, at::kFloat, 2, "topk_weights", problem) && ok;
  if (!zeroCopy) ok = x.has_value() && checkTensor(*x, at::kBFloat16, 3, "x", problem) && ok;
  const int64_t fullRows = int64_t{lowLatencyCapacity()} * numRanks();
  at::Tensor widened;  // x in the slot's layout when the call's T' < T
  if (ok && !zeroCopy && x->size(1) != fullRows) {
    if (x->size(1) > fullRows || x->size(1) % numRanks() != 0) {
      problem = fmt::format("x has {} rows per expert; expected num_ranks * T' <= {}", x->size(1),
                            fullRows);
      ok = false;
    } else {
      widened = at::empty({x->size(0), fullRows, x->size(2)}, x->options());
      widened.narrow(1, 0, x->size(1)).copy_(*x);
    }
  }
  if (ok && !zeroCopy && x->size(2) != handle.hidden) {
    problem = fmt::format("x has hidden {}, the dispatch {}", x->size(2), handle.hidden);
    ok = false;
  }
  if (ok && out.has_value()) {
    ok = checkTensor(*out, at::kBFloat16, 2, "out", problem) && out->size(0) == handle.numTokens &&
         out->size(1) == handle.hidden;
    if (!ok && problem.empty()) problem = "out must be [num_tokens, hidden]";
  }
  ep::LowLatencyCombineInputs in;
  in.handle = handle;
  in.zeroCopy = zeroCopy;
  in.returnRecvHook = returnRecvHook;
  if (ok) {
    in.x = zeroCopy ? nullptr
                    : reinterpret_cast<const Bf16*>(widened.defined() ? widened.data_ptr()
                                                                      : x->data_ptr());
    in.topkIdx = topkIdx.data_ptr<int64_t>();
    in.topkWeights = topkWeights.data_ptr<float>();
    if (out.has_value()) in.out = reinterpret_cast<Bf16*>(out->data_ptr());
  } else {
    in.handle = ep::LowLatencyHandle{};  // refused on every rank
  }
  ep::LowLatencyCombineOutputs result;
  try {
    buffer_->lowLatencyCombine(in, result);
  } catch (const Error&) {
    if (!ok) raise(rank(), kOp, problem);
    throw;
  }
  const auto bf16 = at::TensorOptions().dtype(at::kBFloat16);
  at::Tensor combined =
      out.has_value() ? *out
      : result.numTokens == 0
          ? at::empty({0, int64_t{handle.hidden}}, bf16)
          : at::from_blob(result.combinedX, {result.numTokens, int64_t{handle.hidden}}, bf16);
  return {combined, std::move(result.hook)};
}

at::Tensor EpBuffer::lowLatencyCombineBuffer(const ep::LowLatencyHandle& handle, int maxTokens) {
  Bf16* p = buffer_->lowLatencyCombineBuffer(handle);
  const int64_t L = handle.numExperts / numRanks(), H = handle.hidden,
                full = int64_t{lowLatencyCapacity()} * numRanks(),
                rows = int64_t{std::clamp(maxTokens, 1, lowLatencyCapacity())} * numRanks();
  return at::from_blob(p, {L, rows, H}, {full * H, H, 1}, at::TensorOptions().dtype(at::kBFloat16));
}

double EpBuffer::timeNormalDispatch(const at::Tensor& x, const at::Tensor& topkIdx,
                                    const at::Tensor& topkWeights, int numExperts, int iters) {
  ep::DispatchInputs in;
  in.x = reinterpret_cast<const Bf16*>(x.data_ptr());
  in.numTokens = static_cast<int>(x.size(0));
  in.hidden = static_cast<int>(x.size(1));
  in.topkIdx = topkIdx.data_ptr<int64_t>();
  in.topkWeights = topkWeights.data_ptr<float>();
  in.numTopk = static_cast<int>(topkIdx.size(1));
  in.numExperts = numExperts;
  in.dequantize = true;
  return secondsPerCall(*comm_, iters, [&] { buffer_->dispatch(in, timedOutputs_); });
}

double EpBuffer::timeLowLatency(const at::Tensor& x, const at::Tensor& topkIdx,
                                const at::Tensor& topkWeights, int numExperts, int iters) {
  ep::LowLatencyDispatchInputs in;
  in.x = reinterpret_cast<const Bf16*>(x.data_ptr());
  in.numTokens = static_cast<int>(x.size(0));
  in.hidden = static_cast<int>(x.size(1));
  in.topkIdx = topkIdx.data_ptr<int64_t>();
  in.numTopk = static_cast<int>(topkIdx.size(1));
  in.numExperts = numExperts;
  const auto once = [&] {
    ep::LowLatencyDispatchOutputs d;
    buffer_->lowLatencyDispatch(in, d);
    ep::LowLatencyCombineInputs c;
    c.x = d.recvX;
    c.topkIdx = in.topkIdx;
    c.topkWeights = topkWeights.data_ptr<float>();
    c.handle = d.handle;
    ep::LowLatencyCombineOutputs r;
    buffer_->lowLatencyCombine(c, r);
  };
  return secondsPerCall(*comm_, iters, once);
}

at::Tensor EpBuffer::rankPrefixMatrix(const NormalHandle& h) {
  const int R = numRanks();
  std::vector<int32_t> mine(static_cast<std::size_t>(R), 0);
  for (int round = 0; round < h.handle.numRounds; ++round) {
    for (int src = 0; src < R; ++src) {
      mine[src] +=
          static_cast<int32_t>(h.handle.recvCounts[static_cast<std::size_t>(round) * R + src]);
    }
  }
  // [dst][src] gathered, then [src][dst] cumulative over src.
  std::vector<int32_t> all(static_cast<std::size_t>(R) * R);
  comm_->allGather(mine.data(), all.data(), static_cast<std::size_t>(R), DataType::kI32);
  at::Tensor m = at::empty({R, R}, at::kInt);
  auto* p = m.data_ptr<int32_t>();
  for (int dst = 0; dst < R; ++dst) {
    int32_t sum = 0;
    for (int src = 0; src < R; ++src) {
      sum += all[static_cast<std::size_t>(dst) * R + src];
      p[src * R + dst] = sum;
    }
  }
  return m;
}

}  // namespace epcomm::python
