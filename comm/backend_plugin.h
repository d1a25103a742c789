// The C++ side of the backend plugin ABI (comm/backend.h). A backend implements
// epcomm::Backend and exports it from one translation unit (its plugin.cpp) with
//
//   EPCOMM_EXPORT_BACKEND("name", capabilities, maxCountPerCall, my::Backend)
//
// where my::Backend has a constructor Backend(const epcommBackendCreateArgs&). Methods throw
// epcomm::Error; the adapter turns that into the ABI's result code + lastError message, so
// no C++ exception crosses the shared-library boundary. A plugin links libepcomm
// (epcomm::epcomm) for throwError and the dtype helpers.
#pragma once

#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "comm/backend.h"
#include "comm/error.h"

namespace epcomm {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual void abort() = 0;
  // Returns nullptr for a negative color.
  virtual std::unique_ptr<Backend> split(int color, int key) = 0;

  virtual void allReduce(const void* send, void* recv, size_t count, int dtype, int op) = 0;
  virtual void allGather(const void* send, void* recv, size_t sendCount, int dtype) = 0;
  virtual void allGatherV(const void* send, size_t sendCount, void* recv, const size_t* recvCounts,
                          const size_t* recvDispls, int dtype) = 0;
  virtual void reduceScatter(const void* send, void* recv, size_t recvCount, int dtype, int op) = 0;
  virtual void broadcast(const void* send, void* recv, size_t count, int dtype, int root) = 0;
  virtual void barrier() = 0;
  virtual void allToAll(const void* send, void* recv, size_t countPerRank, int dtype) = 0;
  virtual void allToAllV(const void* send, const size_t* sendCounts, const size_t* sendDispls,
                         void* recv, const size_t* recvCounts, const size_t* recvDispls,
                         int dtype) = 0;
  virtual void send(const void* buf, size_t count, int dtype, int peer, int tag) = 0;
  virtual void recv(void* buf, size_t count, int dtype, int peer, int tag) = 0;
  // EPCOMM_BACKEND_CAP_CHECKS_CONSISTENCY: arms the check the next collective carries
  // (nullptr disarms). Backends without the capability keep this no-op.
  virtual void setCallCheck(const epcommCallCheck* check) { (void)check; }
};

static_assert(epcommBackendSystemError == toResultCode(ErrorCode::kSystemError) &&
              epcommBackendInternalError == toResultCode(ErrorCode::kInternal) &&
              epcommBackendInvalidArgument == toResultCode(ErrorCode::kInvalidArgument) &&
              epcommBackendInvalidUsage == toResultCode(ErrorCode::kInvalidUsage) &&
              epcommBackendRemoteError == toResultCode(ErrorCode::kPeerLost) &&
              epcommBackendTimeout == toResultCode(ErrorCode::kTimeout));

namespace plugin_detail {

struct State {
  std::unique_ptr<Backend> impl;
  std::string lastError;
};

// Runs fn, converting any exception into a result code and a stored message.
template <typename Fn>
int guarded(std::string& lastError, Fn&& fn) noexcept {
  return catchToResult(lastError, std::forward<Fn>(fn));
}

inline Backend& impl(void* s) {
  return *static_cast<State*>(s)->impl;
}
inline std::string& err(void* s) {
  return static_cast<State*>(s)->lastError;
}

template <typename Impl>
constexpr epcommBackendV1 makeTable(const char* name, uint64_t capabilities,
                                    uint64_t maxCountPerCall) {
  epcommBackendV1 t{};
  t.abiVersion = EPCOMM_BACKEND_ABI_VERSION;
  t.structSize = sizeof(epcommBackendV1);
  t.name = name;
  t.capabilities = capabilities;
  t.maxCountPerCall = maxCountPerCall;
  t.create = [](const epcommBackendCreateArgs* args, void** state, char* errBuf,
                size_t errLen) -> int {
    std::string message;
    const int rc = guarded(message, [&] {
      auto s = std::make_unique<State>();
      s->impl = std::make_unique<Impl>(*args);
      *state = s.release();
    });
    if (rc != epcommBackendSuccess && errBuf != nullptr && errLen > 0) {
      const size_t n = message.size() < errLen - 1 ? message.size() : errLen - 1;
      message.copy(errBuf, n);
      errBuf[n] = '\0';
    }
    return rc;
  };
  t.destroy = [](void* s) { delete static_cast<State*>(s); };
  t.lastError = [](void* s) -> const char* { return err(s).c_str(); };
  t.abort = [](void* s) -> int { return guarded(err(s), [&] { impl(s).abort(); }); };
  t.split = [](void* s, int color, int key, void** newState, int* newRank, int* newSize) {
    return guarded(err(s), [&] {
      *newState = nullptr;
      std::unique_ptr<Backend> child = impl(s).split(color, key);
      if (!child) return;
      *newRank = child->rank();
      *newSize = child->size();
      auto state = std::make_unique<State>();
      state->impl = std::move(child);
      *newState = state.release();
    });
  };
  t.allReduce = [](void* s, const void* snd, void* rcv, size_t count, int dtype, int op) {
    return guarded(err(s), [&] { impl(s).allReduce(snd, rcv, count, dtype, op); });
  };
  t.allGather = [](void* s, const void* snd, void* rcv, size_t count, int dtype) {
    return guarded(err(s), [&] { impl(s).allGather(snd, rcv, count, dtype); });
  };
  t.allGatherV = [](void* s, const void* snd, size_t count, void* rcv, const size_t* counts,
                    const size_t* displs, int dtype) {
    return guarded(err(s), [&] { impl(s).allGatherV(snd, count, rcv, counts, displs, dtype); });
  };
  t.reduceScatter = [](void* s, const void* snd, void* rcv, size_t count, int dtype, int op) {
    return guarded(err(s), [&] { impl(s).reduceScatter(snd, rcv, count, dtype, op); });
  };
  t.broadcast = [](void* s, const void* snd, void* rcv, size_t count, int dtype, int root) {
    return guarded(err(s), [&] { impl(s).broadcast(snd, rcv, count, dtype, root); });
  };
  t.barrier = [](void* s) { return guarded(err(s), [&] { impl(s).barrier(); }); };
  t.allToAll = [](void* s, const void* snd, void* rcv, size_t count, int dtype) {
    return guarded(err(s), [&] { impl(s).allToAll(snd, rcv, count, dtype); });
  };
  t.allToAllV = [](void* s, const void* snd, const size_t* sc, const size_t* sd, void* rcv,
                   const size_t* rc, const size_t* rd, int dtype) {
    return guarded(err(s), [&] { impl(s).allToAllV(snd, sc, sd, rcv, rc, rd, dtype); });
  };
  t.send = [](void* s, const void* buf, size_t count, int dtype, int peer, int tag) {
    return guarded(err(s), [&] { impl(s).send(buf, count, dtype, peer, tag); });
  };
  t.recv = [](void* s, void* buf, size_t count, int dtype, int peer, int tag) {
    return guarded(err(s), [&] { impl(s).recv(buf, count, dtype, peer, tag); });
  };
  t.setCallCheck = [](void* s, const epcommCallCheck* check) {
    return guarded(err(s), [&] { impl(s).setCallCheck(check); });
  };
  return t;
}

}  // namespace plugin_detail
}  // namespace epcomm

// MAX_COUNT: the most elements (or the largest displacement) one call may pass; 0: no limit.
#define EPCOMM_EXPORT_BACKEND(NAME, CAPABILITIES, MAX_COUNT, IMPL)                           \
  extern "C" __attribute__((visibility("default"))) const epcommBackendV1 epcommBackend_v1 = \
      ::epcomm::plugin_detail::makeTable<IMPL>(NAME, CAPABILITIES, MAX_COUNT);
