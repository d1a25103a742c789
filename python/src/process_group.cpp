#include "python/src/process_group.h"

#include <ATen/core/ivalue.h>
#include <fmt/format.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "comm/error.h"
#include "python/src/tensor_args.h"

namespace epcomm::python {
namespace {

// A call that has already run: wait() returns at once; the future holds the outputs.
class CompletedWork : public c10d::Work {
 public:
  CompletedWork(int rank, c10d::OpType type, std::vector<at::Tensor> outputs)
      : c10d::Work(rank, type), outputs_(std::move(outputs)) {
    finish();
  }
  bool isCompleted() override { return true; }
  bool isSuccess() const override { return true; }
  bool wait(std::chrono::milliseconds) override { return true; }
  std::vector<at::Tensor> result() override { return outputs_; }
  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override {
    auto future =
        c10::make_intrusive<c10::ivalue::Future>(c10::ListType::create(c10::TensorType::get()));
    future->markCompleted(c10::IValue(outputs_));
    return future;
  }

 private:
  std::vector<at::Tensor> outputs_;
};

c10::intrusive_ptr<c10d::Work> done(int rank, c10d::OpType type,
                                    std::vector<at::Tensor> outputs = {}) {
  return c10::make_intrusive<CompletedWork>(rank, type, std::move(outputs));
}

// send / recv: point to point has no agreement, so a bad tensor is an error on this rank
// only.
template <typename Fn>
c10::intrusive_ptr<c10d::Work> pointToPoint(Communicator& comm, std::vector<at::Tensor>& tensors,
                                            const char* name, c10d::OpType type, Fn&& fn) {
  Call call(comm, name);
  const TensorArg t = call.single(tensors);
  call.raiseLocal();
  fn(t);
  return done(comm.rank(), type, tensors);
}

// The all-gather the communicator bootstraps with, over the group's store: each call writes
// this rank's bytes under its own key and reads every rank's (the store's get waits, up to
// the store's timeout).
OobAllGather storeAllGather(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size) {
  auto round = std::make_shared<std::atomic<int>>(0);
  return [store, rank, size, round](const void* send, void* recv, std::size_t bytes) {
    const std::string prefix = fmt::format("epcomm/bootstrap/{}/", round->fetch_add(1));
    const auto* s = static_cast<const std::uint8_t*>(send);
    store->set(prefix + fmt::format("{}", rank), std::vector<std::uint8_t>(s, s + bytes));
    for (int r = 0; r < size; ++r) {
      const std::vector<std::uint8_t> v = store->get(prefix + fmt::format("{}", r));
      if (v.size() != bytes) {
        throwError(ErrorCode::kInternal, rank, "init",
                   fmt::format("store all-gather: rank {} wrote {} bytes, expected {}", r, v.size(),
                               bytes));
      }
      std::memcpy(static_cast<std::uint8_t*>(recv) + static_cast<std::size_t>(r) * bytes, v.data(),
                  bytes);
    }
  };
}

// All-to-all-v counts that go with poisoned (null, one element) buffers: one element to and
// from every rank, so the communicator refuses the call.
void poisonCounts(int size, std::vector<std::size_t>& sc, std::vector<std::size_t>& sd,
                  std::vector<std::size_t>& rc, std::vector<std::size_t>& rd) {
  sc.assign(size, 1);
  rc.assign(size, 1);
  sd.assign(size, 0);
  rd.assign(size, 0);
}

Config configWithTimeout(std::chrono::milliseconds timeout) {
  Config config = Config::fromEnvironment();
  if (config.value("EPCOMM_TIMEOUT_MS").source == "default") config.timeoutMs = timeout.count();
  return config;
}

}  // namespace

ProcessGroupEpcomm::ProcessGroupEpcomm(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                       int size, std::chrono::milliseconds timeout)
    : c10d::ProcessGroup(rank, size),
      comm_(Communicator::init(storeAllGather(store, rank, size), rank, size,
                               configWithTimeout(timeout))) {}

ProcessGroupEpcomm::~ProcessGroupEpcomm() = default;

at::Tensor ProcessGroupEpcomm::registeredBytes(std::size_t bytes) {
  registered_.push_back(comm_->allocate(std::max<std::size_t>(bytes, 1)));
  return at::from_blob(registered_.back()->data(), {static_cast<int64_t>(bytes)},
                       at::TensorOptions().dtype(at::kByte));
}
c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::broadcast(std::vector<at::Tensor>& tensors,
                                                             const c10d::BroadcastOptions& opts) {
  Call call(*comm_, "broadcast");
  const TensorArg t = call.single(tensors);
  call.run(
      [&](const TensorArg& a) {
        comm_->broadcast(a.data, a.data, a.count, a.dtype, static_cast<int>(opts.rootRank));
      },
      t);
  return done(rank_, c10d::OpType::BROADCAST, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::allReduceInto(std::vector<at::Tensor>& tensors,
                                                                 const c10d::ReduceOp& reduceOp,
                                                                 const char* name, bool keep,
                                                                 c10d::OpType type) {
  Call call(*comm_, name);
  const TensorArg t = call.single(tensors);
  const ReduceOp op = call.reduceOp(reduceOp);
  // A rank that does not keep the result reduces into a scratch copy.
  at::Tensor scratch = t.ok() && !keep ? tensors[0].clone() : at::Tensor();
  call.run(
      [&](const TensorArg& a) {
        void* out = scratch.defined() ? scratch.data_ptr() : a.data;
        comm_->allReduce(a.data, out, a.count, a.dtype, op);
      },
      t);
  return done(rank_, type, tensors);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::allreduce(std::vector<at::Tensor>& tensors,
                                                             const c10d::AllreduceOptions& opts) {
  return allReduceInto(tensors, opts.reduceOp, "allreduce", true, c10d::OpType::ALLREDUCE);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::reduce(std::vector<at::Tensor>& tensors,
                                                          const c10d::ReduceOptions& opts) {
  // An all-reduce of which only the root keeps the result.
  return allReduceInto(tensors, opts.reduceOp, "reduce", rank_ == opts.rootRank,
                       c10d::OpType::REDUCE);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::_allgather_base(at::Tensor& output,
                                                                   at::Tensor& input,
                                                                   const c10d::AllgatherOptions&) {
  Call call(*comm_, "all_gather_into_tensor");
  const TensorArg in = call.tensor(input, "input");
  const TensorArg out = call.tensor(output, "output");
  call.require(!in.ok() || !out.ok() || out.count == in.count * static_cast<std::size_t>(size_),
               "the output must hold world_size * input.numel() elements");
  call.require(!in.ok() || !out.ok() || in.dtype == out.dtype, "input and output dtypes differ");
  call.run([&](const TensorArg& i,
               const TensorArg& o) { comm_->allGather(i.data, o.data, i.count, i.dtype); },
           in, out);
  return done(rank_, c10d::OpType::_ALLGATHER_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::allgather(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const c10d::AllgatherOptions&) {
  Call call(*comm_, "all_gather");
  const TensorArg in = call.single(inputs);
  call.require(outputs.size() == 1 && outputs[0].size() == static_cast<std::size_t>(size_),
               "expects one output list of world_size tensors");
  at::Tensor flat = in.ok() && call.ok()
                        ? at::empty({size_ * static_cast<int64_t>(in.count)}, inputs[0].options())
                        : at::Tensor();
  for (std::size_t r = 0; call.ok() && r < outputs[0].size(); ++r) {
    call.require(outputs[0][r].numel() == static_cast<int64_t>(in.count) &&
                     outputs[0][r].scalar_type() == inputs[0].scalar_type(),
                 "every output tensor must match the input's numel and dtype");
  }
  const TensorArg out = flat.defined() ? call.tensor(flat, "output") : call.absent();
  call.run([&](const TensorArg& i,
               const TensorArg& o) { comm_->allGather(i.data, o.data, i.count, i.dtype); },
           in, out);
  for (int r = 0; r < size_; ++r) {
    outputs[0][r].copy_(
        flat.narrow(0, r * static_cast<int64_t>(in.count), in.count).view(outputs[0][r].sizes()));
  }
  return done(rank_, c10d::OpType::ALLGATHER, outputs[0]);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::gather(
    std::vector<std::vector<at::Tensor>>& outputs, std::vector<at::Tensor>& inputs,
    const c10d::GatherOptions& opts) {
  // An all-gather: every rank receives, the root keeps it (the inputs are small in practice).
  Call call(*comm_, "gather");
  const TensorArg in = call.single(inputs);
  const bool root = rank_ == opts.rootRank;
  call.require(!root || (outputs.size() == 1 && outputs[0].size() == std::size_t(size_)),
               "the root expects one output list of world_size tensors");
  at::Tensor flat = in.ok()
                        ? at::empty({size_ * static_cast<int64_t>(in.count)}, inputs[0].options())
                        : at::Tensor();
  const TensorArg out = flat.defined() ? call.tensor(flat, "output") : call.absent();
  call.run([&](const TensorArg& i,
               const TensorArg& o) { comm_->allGather(i.data, o.data, i.count, i.dtype); },
           in, out);
  if (root) {
    for (int r = 0; r < size_; ++r) {
      outputs[0][r].copy_(
          flat.narrow(0, r * static_cast<int64_t>(in.count), in.count).view(outputs[0][r].sizes()));
    }
  }
  return done(rank_, c10d::OpType::GATHER, root ? outputs[0] : std::vector<at::Tensor>{});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::scatter(
    std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
    const c10d::ScatterOptions& opts) {
  // An all-to-all in which only the root's blocks carry data.
  Call call(*comm_, "scatter");
  const TensorArg out = call.single(outputs);
  const bool root = rank_ == opts.rootRank;
  call.require(!root || (inputs.size() == 1 && inputs[0].size() == std::size_t(size_)),
               "the root expects one input list of world_size tensors");
  at::Tensor send;
  if (out.ok() && call.ok()) {
    send = at::zeros({size_ * static_cast<int64_t>(out.count)}, outputs[0].options());
    for (int r = 0; root && r < size_; ++r) {
      send.narrow(0, r * static_cast<int64_t>(out.count), out.count)
          .copy_(inputs[0][r].reshape({-1}));
    }
  }
  std::vector<std::size_t> sendCounts(size_, 0), displs(size_, 0), recvCounts(size_, 0);
  for (int r = 0; r < size_; ++r) {
    sendCounts[r] = root ? out.count : 0;
    displs[r] = static_cast<std::size_t>(r) * out.count;
  }
  recvCounts[opts.rootRank] = out.count;
  std::vector<std::size_t> recvDispls(size_, 0);
  const TensorArg in = send.defined() ? call.tensor(send, "input") : call.absent();
  if (!call.ok()) poisonCounts(size_, sendCounts, displs, recvCounts, recvDispls);
  call.run(
      [&](const TensorArg& i, const TensorArg& o) {
        comm_->allToAllV(i.data, sendCounts.data(), displs.data(), o.data, recvCounts.data(),
                         recvDispls.data(), o.dtype);
      },
      in, out);
  return done(rank_, c10d::OpType::SCATTER, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::_reduce_scatter_base(
    at::Tensor& output, at::Tensor& input, const c10d::ReduceScatterOptions& opts) {
  Call call(*comm_, "reduce_scatter_tensor");
  const TensorArg in = call.tensor(input, "input");
  const TensorArg out = call.tensor(output, "output");
  const ReduceOp op = call.reduceOp(opts.reduceOp);
  call.require(!in.ok() || !out.ok() || in.count == out.count * static_cast<std::size_t>(size_),
               "the input must hold world_size * output.numel() elements");
  call.require(!in.ok() || !out.ok() || in.dtype == out.dtype, "input and output dtypes differ");
  call.run([&](const TensorArg& i,
               const TensorArg& o) { comm_->reduceScatter(i.data, o.data, o.count, o.dtype, op); },
           in, out);
  return done(rank_, c10d::OpType::_REDUCE_SCATTER_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::reduce_scatter(
    std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
    const c10d::ReduceScatterOptions& opts) {
  Call call(*comm_, "reduce_scatter");
  const TensorArg out = call.single(outputs);
  const ReduceOp op = call.reduceOp(opts.reduceOp);
  call.require(inputs.size() == 1 && inputs[0].size() == static_cast<std::size_t>(size_),
               "expects one input list of world_size tensors");
  at::Tensor flat;
  if (out.ok() && call.ok()) {
    std::vector<at::Tensor> parts;
    for (const at::Tensor& t : inputs[0]) parts.push_back(t.reshape({-1}));
    flat = at::cat(parts);
    call.require(flat.numel() == size_ * static_cast<int64_t>(out.count) &&
                     flat.scalar_type() == outputs[0].scalar_type(),
                 "every input tensor must match the output's numel and dtype");
  }
  const TensorArg in = flat.defined() ? call.tensor(flat, "input") : call.absent();
  call.run([&](const TensorArg& i,
               const TensorArg& o) { comm_->reduceScatter(i.data, o.data, o.count, o.dtype, op); },
           in, out);
  return done(rank_, c10d::OpType::REDUCE_SCATTER, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::alltoall_base(at::Tensor& output,
                                                                 at::Tensor& input,
                                                                 std::vector<int64_t>& outputSplits,
                                                                 std::vector<int64_t>& inputSplits,
                                                                 const c10d::AllToAllOptions&) {
  Call call(*comm_, "all_to_all_single");
  const TensorArg in = call.tensor(input, "input");
  const TensorArg out = call.tensor(output, "output");
  call.require(!in.ok() || !out.ok() || in.dtype == out.dtype, "input and output dtypes differ");
  // Splits count rows of dim 0; empty splits mean equal blocks.
  const auto rowElements = [](const at::Tensor& t) -> std::size_t {
    return t.dim() == 0 || t.size(0) == 0 ? 0 : static_cast<std::size_t>(t.numel() / t.size(0));
  };
  std::vector<std::size_t> sc, sd, rc, rd;
  const auto blocks = [&](const at::Tensor& t, const std::vector<int64_t>& splits,
                          std::vector<std::size_t>& counts, std::vector<std::size_t>& displs,
                          const char* what) {
    counts.assign(size_, 0);
    displs.assign(size_, 0);
    if (!call.ok()) return;
    const std::size_t row = rowElements(t);
    if (splits.empty()) {
      call.require(t.dim() > 0 && t.size(0) % size_ == 0,
                   std::string(what) + ": dim 0 must divide by world_size without splits");
      for (int r = 0; call.ok() && r < size_; ++r) {
        counts[r] = static_cast<std::size_t>(t.numel() / size_);
        displs[r] = r * counts[r];
      }
      return;
    }
    call.require(splits.size() == static_cast<std::size_t>(size_),
                 std::string(what) + " splits must have world_size entries");
    std::int64_t rows = 0;
    for (int r = 0; call.ok() && r < size_; ++r) {
      call.require(splits[r] >= 0, std::string(what) + " splits must not be negative");
      counts[r] = static_cast<std::size_t>(splits[r]) * row;
      displs[r] = static_cast<std::size_t>(rows) * row;
      rows += splits[r];
    }
    call.require(!call.ok() || t.dim() > 0 && rows == t.size(0),
                 std::string(what) + " splits must sum to dim 0");
  };
  if (in.ok() && out.ok()) {
    blocks(input, inputSplits, sc, sd, "input");
    blocks(output, outputSplits, rc, rd, "output");
  }
  if (!call.ok()) poisonCounts(size_, sc, sd, rc, rd);
  call.run(
      [&](const TensorArg& i, const TensorArg& o) {
        comm_->allToAllV(i.data, sc.data(), sd.data(), o.data, rc.data(), rd.data(), o.dtype);
      },
      in, out);
  return done(rank_, c10d::OpType::ALLTOALL_BASE, {output});
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::alltoall(std::vector<at::Tensor>& outputs,
                                                            std::vector<at::Tensor>& inputs,
                                                            const c10d::AllToAllOptions& opts) {
  at::Tensor in = at::cat([&] {
    std::vector<at::Tensor> v;
    for (const at::Tensor& t : inputs) v.push_back(t.reshape({-1}));
    return v;
  }());
  int64_t total = 0;
  std::vector<int64_t> inSplits, outSplits;
  for (const at::Tensor& t : inputs) inSplits.push_back(t.numel());
  for (const at::Tensor& t : outputs) {
    outSplits.push_back(t.numel());
    total += t.numel();
  }
  at::Tensor out = at::empty({total}, in.options());
  alltoall_base(out, in, outSplits, inSplits, opts);
  int64_t at = 0;
  for (at::Tensor& t : outputs) {
    t.copy_(out.narrow(0, at, t.numel()).view(t.sizes()));
    at += t.numel();
  }
  return done(rank_, c10d::OpType::ALLTOALL, outputs);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::barrier(const c10d::BarrierOptions&) {
  Call call(*comm_, "barrier");
  call.run([&] { comm_->barrier(); });
  return done(rank_, c10d::OpType::BARRIER);
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::send(std::vector<at::Tensor>& tensors,
                                                        int dstRank, int tag) {
  return pointToPoint(*comm_, tensors, "send", c10d::OpType::SEND, [&](const TensorArg& t) {
    comm_->send(t.data, t.count, t.dtype, dstRank, tag);
  });
}

c10::intrusive_ptr<c10d::Work> ProcessGroupEpcomm::recv(std::vector<at::Tensor>& tensors,
                                                        int srcRank, int tag) {
  return pointToPoint(*comm_, tensors, "recv", c10d::OpType::RECV, [&](const TensorArg& t) {
    comm_->recv(t.data, t.count, t.dtype, srcRank, tag);
  });
}

}  // namespace epcomm::python
