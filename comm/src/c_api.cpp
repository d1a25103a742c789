// The C API (comm/epcomm.h) over the C++ Communicator. No exception leaves this file.
#include "comm/epcomm.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "comm/communicator.h"
#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/c_api_bridge.h"
#include "comm/workers.h"

struct epcommWindow {
  epcommComm* comm = nullptr;
  std::unique_ptr<epcomm::Window> impl;
};

struct epcommComm {
  std::unique_ptr<epcomm::Communicator> impl;
  std::string lastError;
  epcommResult_t asyncError = epcommSuccess;
  std::atomic<int> inFlight{0};  // calls inside impl; destroy waits for them
  // Live windows and registered buffers, in creation order (declared after impl: they go
  // first). Whatever the caller left is destroyed with the communicator.
  std::vector<std::unique_ptr<epcommWindow>> windows;
  std::vector<std::unique_ptr<epcomm::RegisteredBuffer>> buffers;
};

namespace {

thread_local std::string tlsLastError;

epcommResult_t fail(epcommComm* comm, epcommResult_t result, const std::string& message) noexcept {
  try {
    tlsLastError = message;
  } catch (...) {  // out of memory: the code still says what happened
  }
  if (comm) {
    try {
      comm->lastError = message;
    } catch (...) {
    }
    if (comm->impl && comm->impl->aborted() && comm->asyncError == epcommSuccess) {
      comm->asyncError = result;
    }
  }
  return result;
}

// Runs fn, mapping exceptions to result codes and recording the message.
template <typename Fn>
epcommResult_t guard(epcommComm* comm, Fn&& fn) noexcept {
  std::string message;
  const int rc = epcomm::catchToResult(message, std::forward<Fn>(fn));
  return rc == 0 ? epcommSuccess : fail(comm, static_cast<epcommResult_t>(rc), message);
}

// A call on comm: counted in flight so that abort/destroy from another thread waits for it.
template <typename Fn>
epcommResult_t call(epcommComm* comm, const char* op, Fn&& fn) noexcept {
  if (!comm || !comm->impl) {
    return fail(nullptr, epcommInvalidArgument, fmt::format("epcomm: {}: comm is NULL", op));
  }
  comm->inFlight.fetch_add(1);
  const epcommResult_t rc = guard(comm, std::forward<Fn>(fn));
  comm->inFlight.fetch_sub(1);
  return rc;
}

// Deletes comm once no call is inside it (after abort, such a call fails or times out).
void release(epcommComm* comm) {
  while (comm->inFlight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // Windows the caller did not destroy: collectively (every rank leaves the same ones), or
  // locally after an abort; a failure is logged by the window, never thrown.
  comm->windows.clear();
  comm->buffers.clear();
  delete comm;
}

// Applies the caller's config on top of the environment.
epcomm::Config makeConfig(const epcommConfig_t* c, const char* op) {
  epcomm::Config config = epcomm::Config::fromEnvironment();
  if (!c) return config;
  const size_t needed = offsetof(epcommConfig_t, checkArgs) + sizeof(c->checkArgs);
  if (c->magic != EPCOMM_CONFIG_MAGIC || c->size < needed || c->version < 1) {
    throw epcomm::Error(epcomm::ErrorCode::kInvalidArgument,
                        fmt::format("epcomm: {}: config was not initialised with "
                                    "EPCOMM_CONFIG_INITIALIZER (bad size, magic or version)",
                                    op));
  }
  if (c->bufferMiB > (1ll << 20) || c->timeoutMs > (1ll << 40)) {
    throw epcomm::Error(epcomm::ErrorCode::kInvalidArgument,
                        fmt::format("epcomm: {}: config.bufferMiB must be at most 1048576 and "
                                    "config.timeoutMs at most 2^40",
                                    op));
  }
  if (c->backend && *c->backend) config.backend = c->backend;
  if (c->timeoutMs >= 0) config.timeoutMs = c->timeoutMs;
  if (c->bufferMiB > 0) config.bufferBytes = static_cast<size_t>(c->bufferMiB) << 20;
  if (c->checkArgs >= 0) config.checkArgs = c->checkArgs != 0;
  return config;
}

epcommResult_t nullComm(const char* op) {
  return fail(nullptr, epcommInvalidArgument, fmt::format("epcomm: {}: comm is NULL", op));
}

epcommResult_t publish(epcommComm_t* out, std::unique_ptr<epcomm::Communicator> impl) {
  auto* comm = new (std::nothrow) epcommComm;
  if (!comm) return fail(nullptr, epcommSystemError, "epcomm: out of memory");
  comm->impl = std::move(impl);
  *out = comm;
  return epcommSuccess;
}

epcomm::UniqueId toId(const epcommUniqueId& id) {
  epcomm::UniqueId out;
  static_assert(sizeof(id.internal) == epcomm::UniqueId::kBytes);
  std::memcpy(out.bytes.data(), id.internal, sizeof(id.internal));
  return out;
}

}  // namespace

// The bridge (comm/src/c_api_bridge.h): the same fail / call as the functions below.
namespace epcomm::capi {

Communicator* communicatorFromHandle(epcommComm_t comm) noexcept {
  return comm ? comm->impl.get() : nullptr;
}

epcommResult_t fail(epcommComm_t comm, epcommResult_t result, const std::string& message) noexcept {
  return ::fail(comm, result, message);
}

epcommResult_t callOn(epcommComm_t comm, const char* op, void (*fn)(void*),
                      void* context) noexcept {
  return ::call(comm, op, [&] { fn(context); });
}

}  // namespace epcomm::capi

#define EPCOMM_REQUIRE_COMM(comm, op) \
  if (!(comm) || !(comm)->impl) return nullComm(op)

#pragma GCC visibility push(default)
extern "C" {

epcommResult_t epcommGetVersion(int* version) {
  if (!version) return fail(nullptr, epcommInvalidArgument, "epcomm: getVersion: version is NULL");
  *version = EPCOMM_VERSION_CODE;
  return epcommSuccess;
}

epcommResult_t epcommSetThreads(int threads) {
  return guard(nullptr, [&] { epcomm::setThreads(threads); });
}

epcommResult_t epcommGetThreads(int* threads) {
  if (!threads) return fail(nullptr, epcommInvalidArgument, "epcomm: getThreads: threads is NULL");
  *threads = epcomm::threads();
  return epcommSuccess;
}

const char* epcommGetErrorString(epcommResult_t result) {
  switch (result) {
    case epcommSuccess: return "no error";
    case epcommUnhandledDeviceError: return "unhandled device error";
    case epcommSystemError: return "unhandled system error (an OS or library call failed)";
    case epcommInternalError: return "internal error (a bug in epcomm)";
    case epcommInvalidArgument: return "invalid argument";
    case epcommInvalidUsage: return "invalid usage";
    case epcommRemoteError: return "remote process exited or there was a network error";
    case epcommInProgress: return "operation in progress";
    case epcommTimeout: return "timeout";
    default: return "unknown result code";
  }
}

const char* epcommGetLastError(epcommComm_t comm) {
  if (comm) return comm->lastError.c_str();
  return tlsLastError.c_str();
}

epcommResult_t epcommGetUniqueId(epcommUniqueId* uniqueId) {
  if (!uniqueId)
    return fail(nullptr, epcommInvalidArgument, "epcomm: getUniqueId: uniqueId is NULL");
  return guard(nullptr, [&] {
    const epcomm::UniqueId id = epcomm::UniqueId::create();
    std::memcpy(uniqueId->internal, id.bytes.data(), sizeof(uniqueId->internal));
  });
}

epcommResult_t epcommCommInitRankConfig(epcommComm_t* comm, int nranks, epcommUniqueId commId,
                                        int rank, const epcommConfig_t* config) {
  if (!comm) return nullComm("commInitRank");
  *comm = nullptr;
  std::unique_ptr<epcomm::Communicator> impl;
  const epcommResult_t rc = guard(nullptr, [&] {
    impl =
        epcomm::Communicator::init(toId(commId), rank, nranks, makeConfig(config, "commInitRank"));
  });
  return rc == epcommSuccess ? publish(comm, std::move(impl)) : rc;
}

epcommResult_t epcommCommInitRank(epcommComm_t* comm, int nranks, epcommUniqueId commId, int rank) {
  return epcommCommInitRankConfig(comm, nranks, commId, rank, nullptr);
}

epcommResult_t epcommCommInitRankOob(epcommComm_t* comm, int nranks, int rank,
                                     epcommOobAllGather_t allGather, void* ctx,
                                     const epcommConfig_t* config) {
  if (!comm) return nullComm("commInitRankOob");
  *comm = nullptr;
  if (!allGather) {
    return fail(nullptr, epcommInvalidArgument, "epcomm: commInitRankOob: allGather is NULL");
  }
  std::unique_ptr<epcomm::Communicator> impl;
  const epcommResult_t rc = guard(nullptr, [&] {
    epcomm::OobAllGather fn = [&](const void* send, void* recv, size_t bytes) {
      if (allGather(ctx, send, recv, bytes) != 0) {
        throw epcomm::Error(epcomm::ErrorCode::kSystemError,
                            fmt::format("epcomm rank {}: init: the caller's out-of-band "
                                        "all-gather returned an error",
                                        rank));
      }
    };
    impl = epcomm::Communicator::init(fn, rank, nranks, makeConfig(config, "commInitRankOob"));
  });
  return rc == epcommSuccess ? publish(comm, std::move(impl)) : rc;
}

epcommResult_t epcommCommInitFromEnv(epcommComm_t* comm, const epcommConfig_t* config) {
  if (!comm) return nullComm("commInitFromEnv");
  *comm = nullptr;
  std::unique_ptr<epcomm::Communicator> impl;
  const epcommResult_t rc = guard(nullptr, [&] {
    impl = epcomm::Communicator::initFromEnvironment(makeConfig(config, "commInitFromEnv"));
  });
  return rc == epcommSuccess ? publish(comm, std::move(impl)) : rc;
}

epcommResult_t epcommCommSplit(epcommComm_t comm, int color, int key, epcommComm_t* newcomm,
                               const epcommConfig_t* config) {
  EPCOMM_REQUIRE_COMM(comm, "commSplit");
  if (!newcomm) return fail(comm, epcommInvalidArgument, "epcomm: commSplit: newcomm is NULL");
  *newcomm = nullptr;
  std::unique_ptr<epcomm::Communicator> impl;
  const epcommResult_t rc = call(comm, "commSplit", [&] {
    if (config) makeConfig(config, "commSplit");  // validated; the child inherits the parent's
    impl = comm->impl->split(color, key);
  });
  if (rc != epcommSuccess || !impl) return rc;
  return publish(newcomm, std::move(impl));
}

epcommResult_t epcommCommShrink(epcommComm_t comm, epcommComm_t* newcomm, int* keptRanks) {
  EPCOMM_REQUIRE_COMM(comm, "commShrink");
  if (!newcomm) return fail(comm, epcommInvalidArgument, "epcomm: commShrink: newcomm is NULL");
  *newcomm = nullptr;
  std::unique_ptr<epcomm::Communicator> impl;
  std::vector<int> kept;
  const epcommResult_t rc = call(comm, "commShrink", [&] { impl = comm->impl->shrink(&kept); });
  if (rc != epcommSuccess) return rc;
  if (keptRanks) std::copy(kept.begin(), kept.end(), keptRanks);
  return publish(newcomm, std::move(impl));
}

epcommResult_t epcommCommDestroy(epcommComm_t comm) {
  if (!comm) return epcommSuccess;
  release(comm);
  return epcommSuccess;
}

epcommResult_t epcommCommAbort(epcommComm_t comm) {
  if (!comm) return epcommSuccess;
  if (comm->impl) comm->impl->abort();  // thread-safe: later calls fail at once
  release(comm);
  return epcommSuccess;
}

epcommResult_t epcommCommGetAsyncError(epcommComm_t comm, epcommResult_t* asyncError) {
  EPCOMM_REQUIRE_COMM(comm, "commGetAsyncError");
  if (!asyncError) return fail(comm, epcommInvalidArgument, "epcomm: commGetAsyncError: NULL");
  *asyncError = comm->impl->aborted() && comm->asyncError == epcommSuccess ? epcommInvalidUsage
                                                                           : comm->asyncError;
  return epcommSuccess;
}

epcommResult_t epcommCommGetWaitState(epcommComm_t comm, epcommWaitState_t* state) {
  EPCOMM_REQUIRE_COMM(comm, "commGetWaitState");
  // Another thread's call: its errors go to this thread's last error, not comm's.
  if (!state) {
    return fail(nullptr, epcommInvalidArgument, "epcomm: commGetWaitState: state is NULL");
  }
  // Counted in flight like any call, so a destroy on the owning thread waits for it.
  return call(comm, "commGetWaitState", [&] {
    const epcomm::Communicator::WaitState w = comm->impl->waitState();
    state->waiting = w.waiting ? 1 : 0;
    state->peer = w.peer;
    state->seconds = w.seconds;
    std::snprintf(state->call, sizeof state->call, "%s", w.call.c_str());
  });
}

epcommResult_t epcommCommCount(const epcommComm_t comm, int* count) {
  EPCOMM_REQUIRE_COMM(comm, "commCount");
  if (!count) return fail(comm, epcommInvalidArgument, "epcomm: commCount: count is NULL");
  *count = comm->impl->size();
  return epcommSuccess;
}

epcommResult_t epcommCommUserRank(const epcommComm_t comm, int* rank) {
  EPCOMM_REQUIRE_COMM(comm, "commUserRank");
  if (!rank) return fail(comm, epcommInvalidArgument, "epcomm: commUserRank: rank is NULL");
  *rank = comm->impl->rank();
  return epcommSuccess;
}

epcommResult_t epcommCommPlacement(const epcommComm_t comm, epcommCommPlacement_t* placement) {
  EPCOMM_REQUIRE_COMM(comm, "commPlacement");
  if (!placement) {
    return fail(comm, epcommInvalidArgument, "epcomm: commPlacement: placement is NULL");
  }
  placement->localRank = comm->impl->localRank();
  placement->localSize = comm->impl->localSize();
  placement->host = comm->impl->host();
  placement->numHosts = comm->impl->numHosts();
  return epcommSuccess;
}

#define EPCOMM_DT(d) static_cast<epcomm::DataType>(d)
#define EPCOMM_OP(o) static_cast<epcomm::ReduceOp>(o)

epcommResult_t epcommAllReduce(const void* s, void* r, size_t count, epcommDataType_t d,
                               epcommRedOp_t op, epcommComm_t comm) {
  return call(comm, "allReduce",
              [&] { comm->impl->allReduce(s, r, count, EPCOMM_DT(d), EPCOMM_OP(op)); });
}

epcommResult_t epcommBroadcast(const void* s, void* r, size_t count, epcommDataType_t d, int root,
                               epcommComm_t comm) {
  return call(comm, "broadcast", [&] { comm->impl->broadcast(s, r, count, EPCOMM_DT(d), root); });
}

epcommResult_t epcommReduceScatter(const void* s, void* r, size_t recvcount, epcommDataType_t d,
                                   epcommRedOp_t op, epcommComm_t comm) {
  return call(comm, "reduceScatter",
              [&] { comm->impl->reduceScatter(s, r, recvcount, EPCOMM_DT(d), EPCOMM_OP(op)); });
}

epcommResult_t epcommAllGather(const void* s, void* r, size_t sendcount, epcommDataType_t d,
                               epcommComm_t comm) {
  return call(comm, "allGather", [&] { comm->impl->allGather(s, r, sendcount, EPCOMM_DT(d)); });
}

epcommResult_t epcommAllGatherV(const void* s, size_t sendcount, void* r, const size_t* counts,
                                const size_t* displs, epcommDataType_t d, epcommComm_t comm) {
  return call(comm, "allGatherV",
              [&] { comm->impl->allGatherV(s, sendcount, r, counts, displs, EPCOMM_DT(d)); });
}

epcommResult_t epcommAllToAll(const void* s, void* r, size_t count, epcommDataType_t d,
                              epcommComm_t comm) {
  return call(comm, "allToAll", [&] { comm->impl->allToAll(s, r, count, EPCOMM_DT(d)); });
}

epcommResult_t epcommAllToAllV(const void* s, const size_t* sc, const size_t* sd, void* r,
                               const size_t* rc, const size_t* rd, epcommDataType_t d,
                               epcommComm_t comm) {
  return call(comm, "allToAllV",
              [&] { comm->impl->allToAllV(s, sc, sd, r, rc, rd, EPCOMM_DT(d)); });
}

epcommResult_t epcommSend(const void* s, size_t count, epcommDataType_t d, int peer,
                          epcommComm_t comm) {
  return call(comm, "send", [&] { comm->impl->send(s, count, EPCOMM_DT(d), peer); });
}

epcommResult_t epcommRecv(void* r, size_t count, epcommDataType_t d, int peer, epcommComm_t comm) {
  return call(comm, "recv", [&] { comm->impl->recv(r, count, EPCOMM_DT(d), peer); });
}

epcommResult_t epcommBarrier(epcommComm_t comm) {
  return call(comm, "barrier", [&] { comm->impl->barrier(); });
}

epcommResult_t epcommWindowCreate(epcommComm_t comm, size_t bytes, int numSignals,
                                  epcommWindow_t* win, void** localBase) {
  EPCOMM_REQUIRE_COMM(comm, "windowCreate");
  if (!win) return fail(comm, epcommInvalidArgument, "epcomm: windowCreate: win is NULL");
  *win = nullptr;
  if (localBase) *localBase = nullptr;
  return call(comm, "windowCreate", [&] {
    comm->windows.reserve(comm->windows.size() + 1);  // no throw once the window exists
    auto w = std::make_unique<epcommWindow>();
    w->comm = comm;
    w->impl = comm->impl->createWindow(bytes, numSignals);
    if (localBase) *localBase = w->impl->data();
    *win = w.get();
    comm->windows.push_back(std::move(w));
  });
}

epcommResult_t epcommWindowDestroy(epcommWindow_t win) {
  if (!win) return epcommSuccess;
  epcommComm* comm = win->comm;
  return call(comm, "windowDestroy", [&] {
    for (auto it = comm->windows.begin(); it != comm->windows.end(); ++it) {
      if (it->get() == win) {
        comm->windows.erase(it);  // destroys the window (collective)
        return;
      }
    }
    throw epcomm::Error(epcomm::ErrorCode::kInvalidArgument,
                        fmt::format("epcomm rank {}: windowDestroy: not a live window of its "
                                    "communicator",
                                    comm->impl->rank()));
  });
}

#define EPCOMM_REQUIRE_WINDOW(win, op) \
  if (!(win) || !(win)->impl)          \
  return fail(nullptr, epcommInvalidArgument, "epcomm: " op ": win is NULL")

epcommResult_t epcommWindowPut(epcommWindow_t win, int peer, size_t offset, const void* src,
                               size_t bytes) {
  EPCOMM_REQUIRE_WINDOW(win, "windowPut");
  return call(win->comm, "windowPut", [&] { win->impl->put(peer, offset, src, bytes); });
}

epcommResult_t epcommWindowSignal(epcommWindow_t win, int peer, int slot, uint64_t value,
                                  epcommSignalOp_t op) {
  EPCOMM_REQUIRE_WINDOW(win, "windowSignal");
  static_assert(epcommSignalSet == static_cast<int>(epcomm::SignalOp::kSet) &&
                epcommSignalAdd == static_cast<int>(epcomm::SignalOp::kAdd));
  return call(win->comm, "windowSignal",
              [&] { win->impl->signal(peer, slot, value, static_cast<epcomm::SignalOp>(op)); });
}

epcommResult_t epcommWindowWaitSignal(epcommWindow_t win, int slot, uint64_t value) {
  EPCOMM_REQUIRE_WINDOW(win, "windowWaitSignal");
  return call(win->comm, "windowWaitSignal", [&] { win->impl->waitSignal(slot, value); });
}

epcommResult_t epcommWindowReadSignal(epcommWindow_t win, int slot, uint64_t* value) {
  EPCOMM_REQUIRE_WINDOW(win, "windowReadSignal");
  if (!value)
    return fail(win->comm, epcommInvalidArgument, "epcomm: windowReadSignal: value is NULL");
  return call(win->comm, "windowReadSignal", [&] { *value = win->impl->readSignal(slot); });
}

epcommResult_t epcommWindowPeerData(epcommWindow_t win, int peer, void** base) {
  EPCOMM_REQUIRE_WINDOW(win, "windowPeerData");
  if (!base) return fail(win->comm, epcommInvalidArgument, "epcomm: windowPeerData: base is NULL");
  *base = nullptr;
  return call(win->comm, "windowPeerData", [&] { *base = win->impl->peerData(peer); });
}

epcommResult_t epcommMemAlloc(epcommComm_t comm, size_t bytes, void** ptr) {
  EPCOMM_REQUIRE_COMM(comm, "memAlloc");
  if (!ptr) return fail(comm, epcommInvalidArgument, "epcomm: memAlloc: ptr is NULL");
  *ptr = nullptr;
  return call(comm, "memAlloc", [&] {
    comm->buffers.reserve(comm->buffers.size() + 1);  // no throw once the buffer exists
    std::unique_ptr<epcomm::RegisteredBuffer> buffer = comm->impl->allocate(bytes);
    *ptr = buffer->data();
    comm->buffers.push_back(std::move(buffer));
  });
}

epcommResult_t epcommMemFree(epcommComm_t comm, void* ptr) {
  EPCOMM_REQUIRE_COMM(comm, "memFree");
  if (!ptr) return epcommSuccess;
  return call(comm, "memFree", [&] {
    for (auto it = comm->buffers.begin(); it != comm->buffers.end(); ++it) {
      if ((*it)->data() == ptr) {
        comm->buffers.erase(it);  // collective
        return;
      }
    }
    throw epcomm::Error(epcomm::ErrorCode::kInvalidArgument,
                        fmt::format("epcomm rank {}: memFree: the pointer was not returned by "
                                    "epcommMemAlloc on this communicator (or was freed already)",
                                    comm->impl->rank()));
  });
}

}  // extern "C"
#pragma GCC visibility pop
