#include "backends/ucx/backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "backends/ucx/algorithms.h"
#include "backends/ucx/window.h"
#include "comm/error.h"

namespace epcomm::ucx {
namespace {

constexpr std::uint64_t kStepBits = 10;
constexpr std::uint64_t kSequenceMask = (std::uint64_t{1} << (kTagPayloadBits - kStepBits)) - 1;
constexpr std::uint64_t kStepMask = (std::uint64_t{1} << kStepBits) - 1;
// All-to-all exchanges in flight per rank.
constexpr int kAllToAllWindow = 16;

DataType dt(int dtype) {
  return static_cast<DataType>(dtype);
}

std::size_t integerKnob(const epcommBackendCreateArgs& args, const char* name,
                        std::size_t fallback) {
  const std::string v = knobValue(args, name, "");
  return v.empty() ? fallback : static_cast<std::size_t>(std::strtoull(v.c_str(), nullptr, 10));
}

Tuning tuningFrom(const epcommBackendCreateArgs& args) {
  Tuning t;
  const std::string algo = knobValue(args, "EPCOMM_UCX_ALLREDUCE", "auto");
  if (algo == "recursive_doubling") t.allReduce = Tuning::AllReduce::kRecursiveDoubling;
  if (algo == "ring") t.allReduce = Tuning::AllReduce::kRing;
  t.smallBytes = integerKnob(args, "EPCOMM_UCX_SMALL_BYTES", t.smallBytes);
  t.foldBytes = integerKnob(args, "EPCOMM_UCX_CHECK_FOLD_BYTES", t.foldBytes);
  t.chunkBytes =
      std::max<std::size_t>(64, integerKnob(args, "EPCOMM_UCX_CHUNK_BYTES", t.chunkBytes));
  return t;
}

WorkerOptions workerOptions(const epcommBackendCreateArgs& args) {
  WorkerOptions o;
  o.rank = args.rank;
  o.size = args.size;
  o.timeoutMs = args.timeoutMs;
  o.reportMs = waitReportMs(args);
  o.log = args.log;
  const std::size_t needed = offsetof(epcommBackendCreateArgs, netDevice) + sizeof(args.netDevice);
  if (args.structSize >= needed && args.netDevice) o.netDevice = args.netDevice;
  return o;
}

std::shared_ptr<Worker> makeWorker(const epcommBackendCreateArgs& args) {
  if (!args.bootstrap) {
    throwError(ErrorCode::kInvalidUsage, args.rank, "init",
               "the ucx backend needs the communicator's bootstrap to exchange UCX addresses");
  }
  return std::make_shared<Worker>(workerOptions(args), *args.bootstrap);
}

std::vector<int> identity(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}

}  // namespace

// One collective call's messages over the worker, tagged with the call's sequence number and
// each message's step. Ops still pending when it goes (an error) are cancelled.
class Backend::CallTransport final : public Transport {
 public:
  CallTransport(Backend& backend, const char* op)
      : b_(backend), scope_(backend.scope(op)), sequence_(backend.sequence_++ & kSequenceMask) {
    scope_.mismatchCode = ErrorCode::kInternal;
    backend.checkLive(op);
  }
  ~CallTransport() override {
    if (!ops_.empty()) b_.worker_->cancel(ops_.data(), ops_.size());
  }
  int rank() const override { return b_.rank_; }
  int size() const override { return b_.size_; }
  std::size_t postSend(int peer, std::uint32_t step, const void* buf, std::size_t bytes) override {
    ops_.push_back(b_.worker_->send(world(peer), tag(b_.rank_, step), buf, bytes));
    return ops_.size() - 1;
  }
  std::size_t postRecv(int peer, std::uint32_t step, void* buf, std::size_t bytes) override {
    ops_.push_back(b_.worker_->recv(world(peer), tag(peer, step), buf, bytes));
    return ops_.size() - 1;
  }
  void wait(std::size_t index) override { b_.worker_->waitAll(&ops_[index], 1, scope_); }
  void waitAll() override {
    b_.worker_->waitAll(ops_.data(), ops_.size(), scope_);
    ops_.clear();
  }
  void* scratch(std::size_t bytes, int slot) override { return b_.scratch(bytes, slot); }

 private:
  int world(int peer) const { return b_.world_[static_cast<std::size_t>(peer)]; }
  std::uint64_t tag(int sourceLocal, std::uint32_t step) const {
    return makeTag(b_.context_, TagClass::kCollective, world(sourceLocal),
                   (std::uint64_t{sequence_} << kStepBits) | (step & kStepMask));
  }

  Backend& b_;
  WaitScope scope_;
  std::uint32_t sequence_;
  std::vector<Op> ops_;
};

Backend::Backend(const epcommBackendCreateArgs& args)
    : Backend(makeWorker(args), identity(args.size), args.rank, 0, tuningFrom(args)) {}

Backend::Backend(std::shared_ptr<Worker> worker, std::vector<int> members, int rank,
                 std::uint16_t context, const Tuning& tuning)
    : worker_(std::move(worker)),
      world_(std::move(members)),
      worldToLocal_(static_cast<std::size_t>(worker_->size()), -1),
      rank_(rank),
      size_(static_cast<int>(world_.size())),
      context_(context),
      tuning_(tuning),
      isa_(kernels::detectedIsa()),
      callCheck_(rank, tuning.foldBytes) {
  for (int r = 0; r < size_; ++r)
    worldToLocal_[static_cast<std::size_t>(world_[static_cast<std::size_t>(r)])] = r;
}

Backend::~Backend() {
  // Windows still live here were not destroyed collectively: a peer may still put into
  // them (after an error, certainly), so their memory stays registered and allocated.
  for (auto& [handle, w] : windows_) w->abandon();
  windows_.clear();
}

WaitScope Backend::scope(const char* op) const {
  WaitScope s{rank_, op, &worldToLocal_, &aborted_};
  s.context = context_;
  s.record = &waitRecord_;
  return s;
}

void Backend::abortWithReason(const char* reason) {
  if (aborted_.exchange(true, std::memory_order_acq_rel)) return;
  worker_->notifyAbort(context_, world_, reason);
}

void Backend::checkLive(const char* op) const {
  if (aborted_.load(std::memory_order_acquire)) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               "the communicator was aborted; no call can run on it any more");
  }
}

void Backend::settle(const char* op) {
  if (!callCheck_.armed()) return;
  CallTransport t(*this, op);
  callCheck_.settle(t, rank_, op);
}

std::size_t* Backend::layout(int slot) {
  const auto n = static_cast<std::size_t>(size_);
  if (layout_.size() < 4 * n) layout_.resize(4 * n);
  return layout_.data() + static_cast<std::size_t>(slot) * n;
}

void Backend::uniformBlocks(std::size_t bytes, std::size_t* sizes, std::size_t* displs) const {
  for (int r = 0; r < size_; ++r) {
    sizes[r] = bytes;
    displs[r] = static_cast<std::size_t>(r) * bytes;
  }
}

std::size_t* Backend::inBytes(const std::size_t* counts, std::size_t elementSize,
                              std::size_t* out) const {
  for (int r = 0; r < size_; ++r) out[r] = counts[r] * elementSize;
  return out;
}

void* Backend::scratch(std::size_t bytes, int slot) {
  std::vector<unsigned char>& s = scratch_[slot & 1];
  if (s.size() < bytes) s.resize(bytes);
  return s.data();
}

std::unique_ptr<epcomm::Backend> Backend::split(int color, int key) {
  const char* op = "split";
  // Every rank's (color, key, next free context); the new context is the largest next free
  // one over the parent, so it is unused by every member of every new communicator.
  const std::int64_t mine[3] = {color, key, worker_->nextContext()};
  std::vector<std::int64_t> all(3 * static_cast<std::size_t>(size_));
  allGather(mine, all.data(), 3, static_cast<int>(DataType::kI64));
  std::int64_t context = 0;
  for (int r = 0; r < size_; ++r)
    context = std::max(context, all[3 * static_cast<std::size_t>(r) + 2]);
  if (context >= 0xffff) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               "the ucx backend ran out of communicator ids (65535 splits of one world)");
  }
  worker_->reserveContext(static_cast<std::uint16_t>(context));
  if (color < 0) return nullptr;
  std::vector<std::pair<std::int64_t, int>> members;  // (key, parent rank)
  for (int r = 0; r < size_; ++r) {
    if (all[3 * static_cast<std::size_t>(r)] == color)
      members.emplace_back(all[3 * static_cast<std::size_t>(r) + 1], r);
  }
  std::sort(members.begin(), members.end());
  std::vector<int> world;
  int newRank = 0;
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (members[i].second == rank_) newRank = static_cast<int>(i);
    world.push_back(world_[static_cast<std::size_t>(members[i].second)]);
  }
  return std::unique_ptr<epcomm::Backend>(new Backend(
      worker_, std::move(world), newRank, static_cast<std::uint16_t>(context), tuning_));
}

void Backend::allReduce(const void* send, void* recv, size_t count, int dtype, int op) {
  const Reduction red{dt(dtype), static_cast<ReduceOp>(op), isa_};
  if (callCheck_.armed()) {
    CallTransport check(*this, "allReduce");
    if (callCheck_.settleAllReduce(check, rank_, "allReduce", red, send, recv, count)) {
      lastAlgorithm_ = "check-folded";
      return;
    }
  }
  CallTransport t(*this, "allReduce");
  const std::size_t bytes = count * red.elementSize();
  bool ring = bytes > tuning_.smallBytes && count >= static_cast<std::size_t>(size_);
  if (tuning_.allReduce == Tuning::AllReduce::kRecursiveDoubling) ring = false;
  if (tuning_.allReduce == Tuning::AllReduce::kRing) ring = true;
  if (ring) {
    lastAlgorithm_ = "ring";
    allReduceRing(t, red, send, recv, count, tuning_.chunkBytes);
  } else {
    lastAlgorithm_ = "recursive_doubling";
    allReduceRecursiveDoubling(t, red, send, recv, count);
  }
}

void Backend::allGather(const void* send, void* recv, size_t sendCount, int dtype) {
  settle("allGather");
  CallTransport t(*this, "allGather");
  const std::size_t bytes = sendCount * dtypeSize(dt(dtype));
  if (bytes * static_cast<std::size_t>(size_) <= tuning_.smallBytes) {
    lastAlgorithm_ = "bruck";
    allGatherBruck(t, send, recv, bytes);
    return;
  }
  lastAlgorithm_ = "ring";
  std::size_t* sizes = layout(0);
  std::size_t* displs = layout(1);
  uniformBlocks(bytes, sizes, displs);
  allGatherVRing(t, send, bytes, recv, sizes, displs, tuning_.chunkBytes);
}

void Backend::allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                         const size_t* recvDispls, int dtype) {
  settle("allGatherV");
  CallTransport t(*this, "allGatherV");
  const std::size_t es = dtypeSize(dt(dtype));
  std::size_t* sizes = inBytes(recvCounts, es, layout(0));
  std::size_t* displs = inBytes(recvDispls, es, layout(1));
  lastAlgorithm_ = "ring";
  allGatherVRing(t, send, sendCount * es, recv, sizes, displs, tuning_.chunkBytes);
}

void Backend::reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) {
  settle("reduceScatter");
  CallTransport t(*this, "reduceScatter");
  const Reduction red{dt(dtype), static_cast<ReduceOp>(op), isa_};
  lastAlgorithm_ = "ring";
  reduceScatterRing(t, red, send, recv, recvCount, tuning_.chunkBytes);
}

void Backend::broadcast(const void* send, void* recv, size_t count, int dtype, int root) {
  settle("broadcast");
  CallTransport t(*this, "broadcast");
  const std::size_t bytes = count * dtypeSize(dt(dtype));
  if (rank_ == root && send != recv && bytes) std::memcpy(recv, send, bytes);
  lastAlgorithm_ = "binomial";
  broadcastBinomial(t, recv, bytes, root, tuning_.chunkBytes);
}

void Backend::barrier() {
  settle("barrier");
  CallTransport t(*this, "barrier");
  lastAlgorithm_ = "dissemination";
  barrierDissemination(t);
}

void Backend::allToAll(const void* send, void* recv, size_t countPerRank, int dtype) {
  settle("allToAll");
  CallTransport t(*this, "allToAll");
  const std::size_t bytes = countPerRank * dtypeSize(dt(dtype));
  std::size_t* sizes = layout(0);
  std::size_t* displs = layout(1);
  uniformBlocks(bytes, sizes, displs);
  lastAlgorithm_ = "pairwise";
  allToAllVPairwise(t, send, sizes, displs, recv, sizes, displs, kAllToAllWindow);
}

void Backend::allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls,
                        void* recv, const size_t* recvCounts, const size_t* recvDispls, int dtype) {
  settle("allToAllV");
  CallTransport t(*this, "allToAllV");
  const std::size_t es = dtypeSize(dt(dtype));
  lastAlgorithm_ = "pairwise";
  allToAllVPairwise(t, send, inBytes(sendCounts, es, layout(0)), inBytes(sendDispls, es, layout(1)),
                    recv, inBytes(recvCounts, es, layout(2)), inBytes(recvDispls, es, layout(3)),
                    kAllToAllWindow);
}

void Backend::checkPointToPoint(int tag, const char* op) const {
  checkLive(op);
  if (tag < 0 || static_cast<std::uint64_t>(tag) > kTagPayloadMask) {
    throwError(
        ErrorCode::kInvalidArgument, rank_, op,
        fmt::format("tag {} is outside the ucx backend's range 0..{}", tag, kTagPayloadMask));
  }
}

void Backend::send(const void* buf, size_t count, int dtype, int peer, int tag) {
  const char* op = "send";
  checkPointToPoint(tag, op);
  const int world = world_[static_cast<std::size_t>(peer)];
  Op o = worker_->send(
      world,
      makeTag(context_, TagClass::kPointToPoint, world_[static_cast<std::size_t>(rank_)],
              static_cast<std::uint64_t>(tag)),
      buf, count * dtypeSize(dt(dtype)));
  worker_->waitAll(&o, 1, scope(op));
}

void Backend::recv(void* buf, size_t count, int dtype, int peer, int tag) {
  const char* op = "recv";
  checkPointToPoint(tag, op);
  const int world = world_[static_cast<std::size_t>(peer)];
  Op o = worker_->recv(
      world, makeTag(context_, TagClass::kPointToPoint, world, static_cast<std::uint64_t>(tag)),
      buf, count * dtypeSize(dt(dtype)));
  o.elementSize = dtypeSize(dt(dtype));
  worker_->waitAll(&o, 1, scope(op));
}

}  // namespace epcomm::ucx
