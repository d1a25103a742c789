#include "backends/mpi/backend.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/mpi/data_types.h"
#include "comm/error.h"
#include "comm/types.h"

namespace epcomm::mpi {
namespace {

constexpr int kCreateGroupTag = 0x5ec0;

void finalizeAtExit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// Open MPI loads its components with dlopen and they need libmpi's symbols in the global
// scope; this plugin was loaded RTLD_LOCAL, so promote the MPI library it links.
void promoteMpiLibraryToGlobal() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&MPI_Init_thread), &info) != 0 && info.dli_fname) {
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  }
}

void ensureMpiInitialised(int rank) {
  promoteMpiLibraryToGlobal();
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) {
    throwError(ErrorCode::kInvalidUsage, rank, "init",
               "mpi backend: MPI was already finalized in this process");
  }
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
    throwError(ErrorCode::kSystemError, rank, "init", "mpi backend: MPI_Init_thread failed");
  }
  std::atexit(&finalizeAtExit);
}

}  // namespace

Backend::Backend(MPI_Comm comm, int rank, int size, std::int64_t timeoutMs, std::int64_t reportMs,
                 void (*log)(int, const char*), std::string windowKnob, std::size_t foldBytes)
    : comm_(comm),
      rank_(rank),
      size_(size),
      timeoutMs_(timeoutMs),
      reportMs_(reportMs),
      log_(log),
      windowKnob_(std::move(windowKnob)),
      foldBytes_(foldBytes),
      clock_(std::make_unique<CallClock>(rank, timeoutMs, reportMs, log)),
      callCheck_(std::make_unique<CallCheck>(comm_, rank_, foldBytes_)) {}

Backend::Backend(const epcommBackendCreateArgs& args)
    : rank_(args.rank),
      size_(args.size),
      timeoutMs_(args.timeoutMs),
      reportMs_(waitReportMs(args)),
      log_(args.log),
      windowKnob_(knobValue(args, "EPCOMM_MPI_WINDOW", "auto")),
      foldBytes_(std::stoull(knobValue(args, "EPCOMM_MPI_CHECK_FOLD_BYTES", "64"))) {
  const char* op = "init";
  ensureMpiInitialised(args.rank);
  int worldSize = 0;
  int worldRank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
  MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
  if (!args.bootstrap) {
    if (args.size != worldSize || args.rank != worldRank) {
      throwError(ErrorCode::kInvalidUsage, args.rank, op,
                 fmt::format("mpi backend without a bootstrap needs rank/size equal to "
                             "MPI_COMM_WORLD's ({}/{})",
                             worldRank, worldSize));
    }
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), op);
  } else {
    if (args.size > worldSize) {
      throwError(ErrorCode::kInvalidUsage, args.rank, op,
                 fmt::format("the mpi backend needs all {} ranks launched by one mpirun, but "
                             "MPI_COMM_WORLD has {}{}; launch with mpirun -np {} or choose another "
                             "EPCOMM_BACKEND",
                             args.size, worldSize,
                             worldSize == 1 ? " (this process was not started by mpirun)" : "",
                             args.size));
    }
    std::vector<int> worldRanks(static_cast<size_t>(args.size));
    if (args.bootstrap->allGather(args.bootstrap->ctx, &worldRank, worldRanks.data(),
                                  sizeof(int)) != 0) {
      throwError(ErrorCode::kPeerLost, args.rank, op, "mpi backend: bootstrap all-gather failed");
    }
    std::vector<int> sorted = worldRanks;
    std::sort(sorted.begin(), sorted.end());
    if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() ||
        sorted.back() >= worldSize) {
      throwError(ErrorCode::kInvalidUsage, args.rank, op,
                 "mpi backend: the ranks of this communicator were not all launched by the same "
                 "mpirun (their MPI_COMM_WORLD ranks collide)");
    }
    MPI_Group world = MPI_GROUP_NULL;
    MPI_Group group = MPI_GROUP_NULL;
    MPI_Comm_group(MPI_COMM_WORLD, &world);
    MPI_Group_incl(world, args.size, worldRanks.data(), &group);
    const int rc = MPI_Comm_create_group(MPI_COMM_WORLD, group, kCreateGroupTag, &comm_);
    MPI_Group_free(&group);
    MPI_Group_free(&world);
    check(rc, op);
  }
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  clock_ = std::make_unique<CallClock>(rank_, timeoutMs_, reportMs_, log_);
  callCheck_ = std::make_unique<CallCheck>(comm_, rank_, foldBytes_);
  if (rank_ != args.rank || size_ != args.size) {
    throwError(ErrorCode::kInternal, args.rank, op,
               fmt::format("mpi backend: communicator has rank {} of {}", rank_, size_));
  }
}

Backend::~Backend() {
  windows_.clear();  // windows the caller never destroyed: this rank's resources only
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void Backend::check(int rc, const char* op) const {
  checkMpi(rc, rank_, op);
}

void Backend::checkLive(const char* op) const {
  if (aborted_.load()) {
    throwError(ErrorCode::kInvalidUsage, rank_, op, "mpi backend was aborted");
  }
}

int Backend::toInt(size_t n, const char* op) const {
  if (n > static_cast<size_t>(INT_MAX)) {
    throwError(ErrorCode::kInvalidArgument, rank_, op,
               fmt::format("count {} exceeds INT_MAX elements, the mpi backend's limit per call; "
                           "split the call",
                           n));
  }
  return static_cast<int>(n);
}

std::vector<int> Backend::toInts(const size_t* values, const char* op) const {
  std::vector<int> out(static_cast<size_t>(size_));
  for (int r = 0; r < size_; ++r) out[r] = toInt(values[r], op);
  return out;
}

float* Backend::scratch(size_t count) {
  if (count > scratchCount_) {
    scratch_ = std::make_unique<float[]>(count);
    scratchCount_ = count;
  }
  return scratch_.get();
}

void Backend::setCallCheck(const epcommCallCheck* check) {
  callCheck_->arm(check);
}

void Backend::abort() {
  aborted_.store(true);
}

std::unique_ptr<epcomm::Backend> Backend::split(int color, int key) {
  checkLive("split");
  const CallClock::Scope inFlight(*clock_, "split");
  MPI_Comm child = MPI_COMM_NULL;
  check(MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &child), "split");
  if (child == MPI_COMM_NULL) return nullptr;
  MPI_Comm_set_errhandler(child, MPI_ERRORS_RETURN);
  int r = 0;
  int s = 0;
  MPI_Comm_rank(child, &r);
  MPI_Comm_size(child, &s);
  return std::unique_ptr<epcomm::Backend>(
      new Backend(child, r, s, timeoutMs_, reportMs_, log_, windowKnob_, foldBytes_));
}

void Backend::allReduce(const void* send, void* recv, size_t count, int dtype, int op) {
  const char* name = "allReduce";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  if (callCheck_->settleAllReduce(name, send, recv, count, dtype, op, size_)) {
    lastAlgorithm_ = "check-folded";
    return;
  }
  lastAlgorithm_ = "MPI_Allreduce";
  const int n = toInt(count, name);
  if (isHalf(dtype)) {
    float* f = scratch(count);
    toF32(send, f, count, dtype);
    check(MPI_Allreduce(MPI_IN_PLACE, f, n, MPI_FLOAT, mpiOp(op), comm_), name);
    if (static_cast<ReduceOp>(op) == ReduceOp::kAvg)
      divideBySize(f, count, int(DataType::kF32), size_);
    fromF32(f, recv, count, dtype);
    return;
  }
  check(
      MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, n, mpiType(dtype), mpiOp(op), comm_),
      name);
  if (static_cast<ReduceOp>(op) == ReduceOp::kAvg) divideBySize(recv, count, dtype, size_);
}

void Backend::reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) {
  const char* name = "reduceScatter";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  callCheck_->settle(name);
  const int n = toInt(recvCount, name);
  const size_t total = recvCount * static_cast<size_t>(size_);
  if (isHalf(dtype)) {
    float* f = scratch(total);
    toF32(send, f, total, dtype);
    check(MPI_Reduce_scatter_block(MPI_IN_PLACE, f, n, MPI_FLOAT, mpiOp(op), comm_), name);
    if (static_cast<ReduceOp>(op) == ReduceOp::kAvg)
      divideBySize(f, recvCount, int(DataType::kF32), size_);
    fromF32(f, recv, recvCount, dtype);
    return;
  }
  const size_t bytes = recvCount * dtypeSize(dt(dtype));
  const bool inPlace = recv == static_cast<const char*>(send) + bytes * static_cast<size_t>(rank_);
  void* out = inPlace ? static_cast<void*>(scratch((bytes + 3) / 4)) : recv;
  check(MPI_Reduce_scatter_block(send, out, n, mpiType(dtype), mpiOp(op), comm_), name);
  if (inPlace && bytes) std::memcpy(recv, out, bytes);
  if (static_cast<ReduceOp>(op) == ReduceOp::kAvg) divideBySize(recv, recvCount, dtype, size_);
}

void Backend::allGather(const void* send, void* recv, size_t sendCount, int dtype) {
  const char* name = "allGather";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  callCheck_->settle(name);
  const int n = toInt(sendCount, name);
  const size_t bytes = sendCount * dtypeSize(dt(dtype));
  const bool inPlace = send == static_cast<const char*>(recv) + bytes * static_cast<size_t>(rank_);
  check(MPI_Allgather(inPlace ? MPI_IN_PLACE : send, n, mpiType(dtype), recv, n, mpiType(dtype),
                      comm_),
        name);
}

void Backend::allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                         const size_t* recvDispls, int dtype) {
  const char* name = "allGatherV";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  callCheck_->settle(name);
  const std::vector<int> counts = toInts(recvCounts, name);
  const std::vector<int> displs = toInts(recvDispls, name);
  const bool inPlace =
      send == static_cast<const char*>(recv) + recvDispls[rank_] * dtypeSize(dt(dtype));
  check(MPI_Allgatherv(inPlace ? MPI_IN_PLACE : send, toInt(sendCount, name), mpiType(dtype), recv,
                       counts.data(), displs.data(), mpiType(dtype), comm_),
        name);
}

void Backend::broadcast(const void* send, void* recv, size_t count, int dtype, int root) {
  const char* name = "broadcast";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  callCheck_->settle(name);
  const int n = toInt(count, name);
  if (rank_ == root && send != recv && count) {
    std::memcpy(recv, send, count * dtypeSize(dt(dtype)));
  }
  check(MPI_Bcast(recv, n, mpiType(dtype), root, comm_), name);
}

void Backend::barrier() {
  checkLive("barrier");
  const CallClock::Scope inFlight(*clock_, "barrier");
  if (callCheck_->armed()) {
    callCheck_->settle("barrier");  // an all-reduce: no rank leaves before every rank came
    return;
  }
  check(MPI_Barrier(comm_), "barrier");
}

void Backend::allToAll(const void* send, void* recv, size_t countPerRank, int dtype) {
  const char* name = "allToAll";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  callCheck_->settle(name);
  const int n = toInt(countPerRank, name);
  check(MPI_Alltoall(send == recv ? MPI_IN_PLACE : send, n, mpiType(dtype), recv, n, mpiType(dtype),
                     comm_),
        name);
}

void Backend::allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls,
                        void* recv, const size_t* recvCounts, const size_t* recvDispls, int dtype) {
  const char* name = "allToAllV";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  callCheck_->settle(name);
  const std::vector<int> sc = toInts(sendCounts, name);
  const std::vector<int> sd = toInts(sendDispls, name);
  const std::vector<int> rc = toInts(recvCounts, name);
  const std::vector<int> rd = toInts(recvDispls, name);
  const MPI_Datatype type = mpiType(dtype);
  if (send == recv) {
    check(MPI_Alltoallv(MPI_IN_PLACE, nullptr, nullptr, type, recv, rc.data(), rd.data(), type,
                        comm_),
          name);
    return;
  }
  check(MPI_Alltoallv(send, sc.data(), sd.data(), type, recv, rc.data(), rd.data(), type, comm_),
        name);
}

void Backend::send(const void* buf, size_t count, int dtype, int peer, int tag) {
  checkLive("send");
  const CallClock::Scope inFlight(*clock_, "send");
  check(MPI_Send(buf, toInt(count, "send"), mpiType(dtype), peer, tag, comm_), "send");
}

void Backend::recv(void* buf, size_t count, int dtype, int peer, int tag) {
  const char* name = "recv";
  checkLive(name);
  const CallClock::Scope inFlight(*clock_, name);
  MPI_Status status{};
  const int rc = MPI_Recv(buf, toInt(count, name), mpiType(dtype), peer, tag, comm_, &status);
  int cls = MPI_SUCCESS;
  if (rc != MPI_SUCCESS) MPI_Error_class(rc, &cls);
  if (cls == MPI_ERR_TRUNCATE) {
    throwError(ErrorCode::kInvalidArgument, rank_, name,
               fmt::format("rank {} sent more than the {} elements this recv expects; send and "
                           "recv must pass the same count",
                           peer, count));
  }
  check(rc, name);
  int got = 0;
  MPI_Get_count(&status, mpiType(dtype), &got);
  if (static_cast<size_t>(got) != count) {
    throwError(ErrorCode::kInvalidArgument, rank_, name,
               fmt::format("rank {} sent {} elements, this recv expects {}; send and recv must "
                           "pass the same count",
                           peer, got, count));
  }
}

// ---- windows (window.h) ----

Window& Backend::window(void* handle, const char* op) {
  const auto it = windows_.find(handle);
  if (it == windows_.end()) {
    throwError(ErrorCode::kInternal, rank_, op, "unknown window handle");
  }
  return *it->second;
}

void* Backend::windowCreate(size_t bytes, int numSignals, void** localBase) {
  const char* name = "createWindow";
  checkLive(name);
  if (windowContext_.comm == MPI_COMM_NULL) {
    windowContext_ =
        WindowContext{comm_, rank_, size_, timeoutMs_, &aborted_, clock_.get(), windowKnob_};
  }
  if (!windowTransport_) {
    const CallClock::Scope inFlight(*clock_, name);
    windowTransport_ = chooseWindowTransport(windowContext_);
  }
  std::unique_ptr<Window> w = *windowTransport_ == WindowTransport::kShared
                                  ? createSharedWindow(windowContext_, bytes, numSignals)
                                  : createMessageWindow(windowContext_, bytes, numSignals);
  *localBase = w->localBase();
  void* handle = w.get();
  windows_.emplace(handle, std::move(w));
  return handle;
}

void Backend::windowDestroy(void* handle) {
  const char* name = "destroyWindow";
  const auto it = windows_.find(handle);
  if (it == windows_.end()) {
    throwError(ErrorCode::kInternal, rank_, name, "unknown window handle");
  }
  // Taken out first: whatever happens below, its destructor releases what is left.
  std::unique_ptr<Window> w = std::move(it->second);
  windows_.erase(it);
  if (!aborted_.load()) w->destroy();  // after an abort: this rank's resources only
}

void Backend::windowPut(void* handle, int peer, size_t offset, const void* src, size_t bytes) {
  checkLive("put");
  window(handle, "put").put(peer, offset, src, bytes);
}

void Backend::windowSignal(void* handle, int peer, int slot, std::uint64_t value, int op) {
  checkLive("signal");
  window(handle, "signal").signal(peer, slot, value, op);
}

void Backend::windowWaitSignal(void* handle, int slot, std::uint64_t value) {
  checkLive("waitSignal");
  window(handle, "waitSignal").waitSignal(slot, value);
}

std::uint64_t Backend::windowReadSignal(void* handle, int slot) {
  checkLive("readSignal");
  return window(handle, "readSignal").readSignal(slot);
}

void* Backend::windowPeerBase(void* handle, int peer) {
  return window(handle, "peerData").peerBase(peer);
}

}  // namespace epcomm::mpi
