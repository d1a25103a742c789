#include "backends/shm/backend.h"

#include <fmt/format.h>

#include <sched.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include <sys/sysinfo.h>

#include "backends/shm/algorithms.h"
#include "backends/shm/kernels.h"
#include "comm/error.h"
#include "comm/src/host_identity.h"
#include "comm/types.h"

namespace epcomm::shm {
namespace {

constexpr std::size_t kDefaultBufferBytes = std::size_t{64} << 20;

DataType dt(int dtype) {
  return static_cast<DataType>(dtype);
}

// What every rank contributes at init, in one bootstrap all-gather: its host (shm reaches
// one host only) and the cpus it may run on (oversubscription: the ranks outnumber the cpus
// of all their affinity masks together; a taskset or a container's cpuset counts, and ranks
// bound to one core each do not oversubscribe). The tuning knobs are agreed rows: the
// communicator checks them once it is up.
constexpr int kMaskWords = 16;  // 1024 cpus
struct InitRecord {
  HostIdentity host;
  std::uint64_t cpus[kMaskWords];
};

void fillCpus(std::uint64_t* words) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const bool known = sched_getaffinity(0, sizeof set, &set) == 0;
  const int online = get_nprocs();
  for (int c = 0; c < kMaskWords * 64; ++c) {
    const bool on = known ? (c < CPU_SETSIZE && CPU_ISSET(c, &set)) : c < online;
    if (on) words[c / 64] |= std::uint64_t{1} << (c % 64);
  }
}

}  // namespace

Backend::Backend(const epcommBackendCreateArgs& args)
    : rank_(args.rank),
      size_(args.size),
      timeoutMs_(args.timeoutMs),
      bufferBytes_(args.bufferBytes ? args.bufferBytes : kDefaultBufferBytes) {
  const char* op = "init";
  chooseKernelIsa(knobValue(args, "EPCOMM_SHM_ISA", "auto"));
  lendParallelFor(args);
  if (!args.bootstrap && size_ > 1) {
    throwError(ErrorCode::kInvalidUsage, rank_, op,
               fmt::format("shm backend: {} ranks need a bootstrap all-gather", size_));
  }
  const epcommBackendBootstrap* boot = args.bootstrap;
  const int rank = rank_;
  GatherFn gather = [boot, rank](const void* send, void* recv, std::size_t bytes) {
    if (!boot) {
      std::memcpy(recv, send, bytes);
      return;
    }
    if (boot->allGather(boot->ctx, send, recv, bytes) != 0) {
      throwError(ErrorCode::kPeerLost, rank, "init", "shm backend: bootstrap all-gather failed");
    }
  };
  InitRecord mine{};
  mine.host = thisHost();
  fillCpus(mine.cpus);
  std::vector<InitRecord> all(static_cast<std::size_t>(size_));
  gather(&mine, all.data(), sizeof mine);
  std::uint64_t cpus[kMaskWords] = {};
  for (int r = 0; r < size_; ++r) {
    const InitRecord& other = all[static_cast<std::size_t>(r)];
    // Shared memory reaches the ranks of one host only: say so before any segment is made.
    if (other.host != all[0].host) {
      const auto nameOf = [&](int i) {
        return std::string(all[static_cast<std::size_t>(i)].host.hostname.data());
      };
      throwError(ErrorCode::kInvalidUsage, rank_, op,
                 fmt::format("EPCOMM_BACKEND=shm: the ranks span several hosts (rank 0 on {}, "
                             "rank {} on {}{}); shared memory reaches the ranks of one host only: "
                             "use EPCOMM_BACKEND=auto, or mpi under mpirun",
                             nameOf(0), r, nameOf(r),
                             nameOf(0) == nameOf(r) ? " in another IPC namespace" : ""));
    }
    for (int w = 0; w < kMaskWords; ++w) cpus[w] |= other.cpus[w];
  }
  // More ranks than the cpus they may run on together: every rank computes the same answer.
  int usable = 0;
  for (const std::uint64_t w : cpus) usable += std::popcount(w);
  oversubscribed_ = size_ > usable;
  allReduceTuning_.forced = allReduceIndex(knobValue(args, "EPCOMM_SHM_ALLREDUCE", "auto"));
  allReduceTuning_.linesMaxBytes =
      std::stoull(knobValue(args, "EPCOMM_SHM_LINES_MAX_BYTES", "1024"));
  const std::uint64_t oneShot = std::stoull(knobValue(args, "EPCOMM_SHM_ONESHOT_MAX_BYTES", "0"));
  allReduceTuning_.oneShotMaxBytes = oneShot > 0       ? oneShot
                                     : oversubscribed_ ? kOneShotMaxBytesOversubscribed
                                                       : kOneShotMaxBytes;
  segment_ = Segment::establish(gather, rank_, size_, 0, rank_, size_, bufferBytes_, op);
  log_ = args.log;
  reportMs_ = waitReportMs(args);
  setUp();
  waiter_->setReport(reportMs_, log_);
}

Backend::Backend(std::unique_ptr<Segment> segment, int rank, int size, std::int64_t timeoutMs,
                 std::size_t bufferBytes, bool oversubscribed,
                 const AllReduceTuning& allReduceTuning)
    : segment_(std::move(segment)),
      rank_(rank),
      size_(size),
      timeoutMs_(timeoutMs),
      bufferBytes_(bufferBytes),
      oversubscribed_(oversubscribed),
      allReduceTuning_(allReduceTuning) {
  setUp();
}

Backend::~Backend() = default;

void Backend::setUp() {
  waiter_ = std::make_unique<Waiter>(*segment_, rank_, timeoutMs_);
  waiter_->setOversubscribed(oversubscribed_);
  for (int k = 0; k < kKinds; ++k) {
    channels_.push_back(std::make_unique<Channel>(*segment_, *waiter_, stream_, k, rank_, size_));
  }
  sentChunks_.assign(static_cast<std::size_t>(size_), 0);
  receivedChunks_.assign(static_cast<std::size_t>(size_), 0);
}

void Backend::abort() {
  waiter_->abort();
}

void Backend::abortWithReason(const char* reason) {
  waiter_->abort(reason);
}

std::unique_ptr<epcomm::Backend> Backend::split(int color, int key) {
  const char* op = "split";
  waiter_->checkAborted(op);
  // Every rank learns every (color, key); members of a color are ordered by (key, rank).
  std::int32_t mine[2] = {color, key};
  std::vector<std::int32_t> all(2 * static_cast<std::size_t>(size_));
  allGather(mine, all.data(), 2, static_cast<int>(DataType::kI32));
  std::vector<int> members;
  if (color >= 0) {
    for (int r = 0; r < size_; ++r) {
      if (all[2 * r] == color) members.push_back(r);
    }
    std::stable_sort(members.begin(), members.end(),
                     [&](int a, int b) { return all[2 * a + 1] < all[2 * b + 1]; });
  }
  const int childRank =
      color >= 0
          ? static_cast<int>(std::find(members.begin(), members.end(), rank_) - members.begin())
          : -1;
  const int childSize = static_cast<int>(members.size());
  const int leader = color >= 0 ? members.front() : -1;
  // The parent's own all-gather carries the child's bootstrap.
  GatherFn gather = [this](const void* send, void* recv, std::size_t bytes) {
    allGather(send, recv, bytes, static_cast<int>(DataType::kU8));
  };
  std::unique_ptr<Segment> child =
      Segment::establish(gather, rank_, size_, leader, childRank, childSize, bufferBytes_, op);
  if (!child) return nullptr;
  return this->child(std::move(child), childRank, childSize);
}

std::unique_ptr<Backend> Backend::child(std::unique_ptr<Segment> segment, int rank,
                                        int size) const {
  auto backend = std::unique_ptr<Backend>(new Backend(
      std::move(segment), rank, size, timeoutMs_, bufferBytes_, oversubscribed_, allReduceTuning_));
  backend->log_ = log_;
  backend->reportMs_ = reportMs_;
  backend->waiter_->setReport(reportMs_, log_);
  return backend;
}

void Backend::setCallCheck(const epcommCallCheck* check) {
  ArmedCheck& a = stream_.check;
  a = ArmedCheck{};
  if (!check || check->structSize < sizeof(epcommCallCheck)) return;
  a.armed = size_ > 1;
  a.valid = check->valid != 0;
  a.opId = check->opId;
  a.op = check->op ? check->op : "collective";
  a.numShapes = check->numShapes < 0 ? 0 : (check->numShapes > 3 ? 3 : check->numShapes);
  for (int i = 0; i < a.numShapes; ++i) {
    a.shape[i] = check->shape[i];
    a.shapeName[i] = check->shapeName[i] ? check->shapeName[i] : "a shape";
  }
}

void Backend::notePath(const char* what) {
  if (std::find(notedPaths_.begin(), notedPaths_.end(), what) != notedPaths_.end()) return;
  notedPaths_.push_back(what);
  if (log_) log_(1, what);  // debug
}

void Backend::checkStep(int kind, const OpClock& clock) {
  Channel& ch = channel(kind);
  ch.begin();
  ch.exchange(clock);
}

template <typename Algorithm>
void Backend::collective(const char* op, int kind, Algorithm&& algorithm) {
  struct Disarm {
    ArmedCheck& check;
    ~Disarm() { check.armed = false; }
  } disarm{stream_.check};
  const OpClock clock(op);
  waiter_->checkAborted(op);
  if (stream_.check.armed && !stream_.check.valid) {
    checkStep(kind, clock);  // throws kInvalidArgument on every rank
    return;
  }
  algorithm(Step{channel(kind), clock, rank_, size_});
  if (stream_.check.armed) checkStep(kind, clock);
}

void Backend::allReduce(const void* send, void* recv, size_t count, int dtype, int op) {
  collective("allReduce", kAllReduceKind, [&](const Step& s) {
    const std::size_t bytes = count * dtypeSize(dt(dtype));
    if (registeredCandidate(bytes)) {
      const RegisteredPeers& peers = registered_.peers;
      registry_.agree(s, send, bytes, true, recv, bytes, registered_.peers);
      if (peers.allSend && peers.allRecv) {
        notePath("shm: allReduce on registered buffers: zero-copy two-shot");
        lastAlgorithm_ = "registered-twoshot";
        return allReduceRegisteredTwoShot(s, registered_, count, dt(dtype),
                                          static_cast<ReduceOp>(op));
      }
      if (peers.allSend && bytes <= kRegisteredOneShotMaxBytes) {
        notePath("shm: allReduce on registered buffers: zero-copy one-shot");
        lastAlgorithm_ = "registered-oneshot";
        return allReduceRegisteredOneShot(s, registered_, recv, count, dt(dtype),
                                          static_cast<ReduceOp>(op));
      }
      notePath("shm: allReduce: buffers not registered on every rank: copy path");
    }
    const AllReduceAlgorithm& algorithm = selectAllReduce(bytes, size_, allReduceTuning_);
    lastAlgorithm_ = algorithm.name;
    algorithm.run(s, send, recv, count, dt(dtype), static_cast<ReduceOp>(op));
  });
}

void Backend::reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) {
  collective("reduceScatter", kReduceScatterKind, [&](const Step& s) {
    const std::size_t bytes = recvCount * dtypeSize(dt(dtype));
    if (registeredCandidate(bytes * static_cast<std::size_t>(size_))) {
      registry_.agree(s, send, bytes * static_cast<std::size_t>(size_), true, recv, bytes,
                      registered_.peers);
      if (registered_.peers.allSend) {
        notePath("shm: reduceScatter on registered buffers: zero-copy");
        return reduceScatterRegistered(s, registered_, recv, recvCount, dt(dtype),
                                       static_cast<ReduceOp>(op));
      }
      notePath("shm: reduceScatter: buffers not registered on every rank: copy path");
    }
    shm::reduceScatter(s, send, recv, recvCount, dt(dtype), static_cast<ReduceOp>(op));
  });
}

void Backend::allGather(const void* send, void* recv, size_t sendCount, int dtype) {
  collective("allGather", kAllGatherKind, [&](const Step& s) {
    const std::size_t bytes = sendCount * dtypeSize(dt(dtype));
    if (registeredCandidate(bytes)) {
      registry_.agree(s, send, bytes, true, recv, bytes * static_cast<std::size_t>(size_),
                      registered_.peers);
      if (registered_.peers.allSend) {
        notePath("shm: allGather on registered buffers: zero-copy");
        return allGatherRegistered(s, registered_, recv, bytes);
      }
      notePath("shm: allGather: buffers not registered on every rank: copy path");
    }
    shm::allGather(s, send, recv, bytes);
  });
}

void Backend::allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                         const size_t* recvDispls, int dtype) {
  (void)sendCount;  // == recvCounts[rank] (validated)
  collective("allGatherV", kAllGatherKind, [&](const Step& s) {
    shm::allGatherV(s, send, recv, recvCounts, recvDispls, dtypeSize(dt(dtype)));
  });
}

void Backend::broadcast(const void* send, void* recv, size_t count, int dtype, int root) {
  collective("broadcast", kBroadcastKind, [&](const Step& s) {
    const std::size_t bytes = count * dtypeSize(dt(dtype));
    if (registeredCandidate(bytes)) {
      // Only the root's send is read by peers (and only the root publishes one).
      registry_.agree(s, send, bytes, rank_ == root, recv, bytes, registered_.peers);
      if (registered_.peers.send[static_cast<std::size_t>(root)] != nullptr) {
        notePath("shm: broadcast on registered buffers: zero-copy");
        return broadcastRegistered(s, registered_, recv, bytes, root);
      }
      notePath("shm: broadcast: root's send not registered: copy path");
    }
    shm::broadcast(s, send, recv, bytes, root);
  });
}

void Backend::barrier() {
  collective("barrier", kBarrierKind, [&](const Step& s) { shm::barrier(s); });
}

void Backend::allToAll(const void* send, void* recv, size_t countPerRank, int dtype) {
  collective("allToAll", kAllToAllKind, [&](const Step& s) {
    shm::allToAll(s, send, recv, countPerRank * dtypeSize(dt(dtype)));
  });
}

void Backend::allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls,
                        void* recv, const size_t* recvCounts, const size_t* recvDispls, int dtype) {
  collective("allToAllV", kAllToAllKind, [&](const Step& s) {
    shm::allToAllV(s, send, sendCounts, sendDispls, recv, recvCounts, recvDispls,
                   dtypeSize(dt(dtype)));
  });
}

}  // namespace epcomm::shm
