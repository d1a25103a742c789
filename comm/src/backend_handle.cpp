#include "comm/src/backend_handle.h"

#include <cstddef>
#include <utility>

namespace epcomm {

BackendHandle::BackendHandle(const epcommBackendV1* table, void* state, std::string name, int rank,
                             int size)
    : table_(table), state_(state), name_(std::move(name)), rank_(rank), size_(size) {}

BackendHandle::~BackendHandle() {
  if (state_) table_->destroy(state_);
}

std::unique_ptr<BackendHandle> BackendHandle::create(const epcommBackendV1* table,
                                                     const epcommBackendCreateArgs& args) {
  char err[1024] = {};
  void* state = nullptr;
  const int rc = table->create(&args, &state, err, sizeof(err));
  if (rc != epcommBackendSuccess) {
    throwError(errorCodeFromResult(rc), args.rank, "init",
               std::string("backend ") + table->name + " failed to start: " + err);
  }
  return std::make_unique<BackendHandle>(table, state, table->name, args.rank, args.size);
}

void BackendHandle::check(int result, const char* op) const {
  if (result == epcommBackendSuccess) return;
  const char* message = table_->lastError(state_);
  std::string what = message && *message ? message : "failed without a message";
  // Plugin messages built with throwError already carry "epcomm rank R: op: "; keep them.
  if (what.rfind("epcomm rank ", 0) == 0) throw Error(errorCodeFromResult(result), what);
  throwError(errorCodeFromResult(result), rank_, op, "backend " + name_ + ": " + what);
}

void BackendHandle::abort(const char* reason) {
  constexpr std::size_t kNeeded =
      offsetof(epcommBackendV1, abortWithReason) + sizeof(table_->abortWithReason);
  if (reason && table_->structSize >= kNeeded && table_->abortWithReason) {
    check(table_->abortWithReason(state_, reason), "abort");
    return;
  }
  check(table_->abort(state_), "abort");
}

std::unique_ptr<BackendHandle> BackendHandle::split(int color, int key) {
  void* child = nullptr;
  int newRank = -1;
  int newSize = 0;
  check(table_->split(state_, color, key, &child, &newRank, &newSize), "split");
  if (!child) return nullptr;
  return std::make_unique<BackendHandle>(table_, child, name_, newRank, newSize);
}

BackendHandle::WaitState BackendHandle::waitState() const {
  constexpr std::size_t kNeeded = offsetof(epcommBackendV1, waitState) + sizeof(table_->waitState);
  WaitState state;
  if (table_->structSize < kNeeded || !table_->waitState) return state;
  int waiting = 0;
  char op[96] = {};
  if (table_->waitState(state_, &waiting, &state.peer, &state.seconds, op, sizeof op) != 0) {
    return WaitState{};
  }
  state.waiting = waiting != 0;
  state.op = state.waiting ? op : "";
  return state;
}

bool BackendHandle::canShrink() const {
  constexpr std::size_t kNeeded = offsetof(epcommBackendV1, shrink) + sizeof(table_->shrink);
  return hasCapability(EPCOMM_BACKEND_CAP_SHRINK) && table_->structSize >= kNeeded &&
         table_->shrink;
}

std::unique_ptr<BackendHandle> BackendHandle::shrink(std::vector<int>& keptRanks) {
  void* child = nullptr;
  int newRank = -1;
  int newSize = 0;
  keptRanks.assign(static_cast<std::size_t>(size_), -1);
  check(table_->shrink(state_, &child, &newRank, &newSize, keptRanks.data()), "shrink");
  keptRanks.resize(static_cast<std::size_t>(newSize));
  return std::make_unique<BackendHandle>(table_, child, name_, newRank, newSize);
}

void BackendHandle::allReduce(const void* s, void* r, std::size_t n, int dtype, int op) {
  check(table_->allReduce(state_, s, r, n, dtype, op), "allReduce");
}
void BackendHandle::allGather(const void* s, void* r, std::size_t n, int dtype) {
  check(table_->allGather(state_, s, r, n, dtype), "allGather");
}
void BackendHandle::allGatherV(const void* s, std::size_t n, void* r, const std::size_t* counts,
                               const std::size_t* displs, int dtype) {
  check(table_->allGatherV(state_, s, n, r, counts, displs, dtype), "allGatherV");
}
void BackendHandle::reduceScatter(const void* s, void* r, std::size_t n, int dtype, int op) {
  check(table_->reduceScatter(state_, s, r, n, dtype, op), "reduceScatter");
}
void BackendHandle::broadcast(const void* s, void* r, std::size_t n, int dtype, int root) {
  check(table_->broadcast(state_, s, r, n, dtype, root), "broadcast");
}
void BackendHandle::barrier() {
  check(table_->barrier(state_), "barrier");
}
void BackendHandle::allToAll(const void* s, void* r, std::size_t n, int dtype) {
  check(table_->allToAll(state_, s, r, n, dtype), "allToAll");
}
void BackendHandle::allToAllV(const void* s, const std::size_t* sc, const std::size_t* sd, void* r,
                              const std::size_t* rc, const std::size_t* rd, int dtype) {
  check(table_->allToAllV(state_, s, sc, sd, r, rc, rd, dtype), "allToAllV");
}
void BackendHandle::send(const void* b, std::size_t n, int dtype, int peer, int tag) {
  check(table_->send(state_, b, n, dtype, peer, tag), "send");
}
void BackendHandle::recv(void* b, std::size_t n, int dtype, int peer, int tag) {
  check(table_->recv(state_, b, n, dtype, peer, tag), "recv");
}

void BackendHandle::setCallCheck(const epcommCallCheck& c) {
  if (table_->setCallCheck) check(table_->setCallCheck(state_, &c), c.op);
}

bool BackendHandle::hasWindows() const {
  constexpr std::size_t kNeeded =
      offsetof(epcommBackendV1, windowReadSignal) + sizeof(table_->windowReadSignal);
  return hasCapability(EPCOMM_BACKEND_CAP_WINDOWS) && table_->structSize >= kNeeded &&
         table_->windowCreate && table_->windowDestroy && table_->windowPut &&
         table_->windowSignal && table_->windowWaitSignal && table_->windowReadSignal;
}
void* BackendHandle::windowCreate(std::size_t bytes, int numSignals, void** localBase) {
  void* window = nullptr;
  check(table_->windowCreate(state_, bytes, numSignals, &window, localBase), "windowCreate");
  return window;
}
void BackendHandle::windowDestroy(void* w) {
  check(table_->windowDestroy(state_, w), "windowDestroy");
}
void BackendHandle::windowPut(void* w, int peer, std::size_t off, const void* src,
                              std::size_t bytes) {
  check(table_->windowPut(state_, w, peer, off, src, bytes), "put");
}
void BackendHandle::windowSignal(void* w, int peer, int slot, std::uint64_t value, int op) {
  check(table_->windowSignal(state_, w, peer, slot, value, op), "signal");
}
void BackendHandle::windowWaitSignal(void* w, int slot, std::uint64_t value) {
  check(table_->windowWaitSignal(state_, w, slot, value), "waitSignal");
}
std::uint64_t BackendHandle::windowReadSignal(void* w, int slot) {
  std::uint64_t value = 0;
  check(table_->windowReadSignal(state_, w, slot, &value), "readSignal");
  return value;
}
const char* BackendHandle::lastAlgorithm() const {
  constexpr std::size_t kNeeded =
      offsetof(epcommBackendV1, lastAlgorithm) + sizeof(table_->lastAlgorithm);
  if (table_->structSize < kNeeded || !table_->lastAlgorithm) return "";
  const char* name = table_->lastAlgorithm(state_);
  return name ? name : "";
}

void* BackendHandle::windowPeerBase(void* w, int peer) {
  constexpr std::size_t kNeeded =
      offsetof(epcommBackendV1, windowPeerBase) + sizeof(table_->windowPeerBase);
  if (table_->structSize < kNeeded || !table_->windowPeerBase) return nullptr;
  void* base = nullptr;
  check(table_->windowPeerBase(state_, w, peer, &base), "peerData");
  return base;
}

}  // namespace epcomm
