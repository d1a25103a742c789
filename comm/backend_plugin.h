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

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "backend.h"
#include "error.h"

namespace epcomm {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual void abort() = 0;
  // abort(), telling the peers why (comm/backend.h: abortWithReason). Backends that cannot
  // carry a reason keep this, which aborts without one.
  virtual void abortWithReason(const char* reason) {
    (void)reason;
    abort();
  }
  // Returns nullptr for a negative color.
  virtual std::unique_ptr<Backend> split(int color, int key) = 0;
  // EPCOMM_BACKEND_CAP_SHRINK (contract in comm/backend.h): the survivors' communicator;
  // keptRanks[i] = new rank i's rank here. Backends without the capability keep this.
  virtual std::unique_ptr<Backend> shrink(int* keptRanks) {
    (void)keptRanks;
    throwError(ErrorCode::kInvalidUsage, rank(), "shrink", "this backend cannot shrink");
  }

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

  // Symmetric windows (EPCOMM_BACKEND_CAP_WINDOWS; contracts in comm/backend.h). A window is
  // an opaque handle the backend owns; backends without the capability keep these, which
  // throw kInvalidUsage.
  virtual void* windowCreate(std::size_t bytes, int numSignals, void** localBase);
  virtual void windowDestroy(void* window);
  virtual void windowPut(void* window, int peer, std::size_t offset, const void* src,
                         std::size_t bytes);
  virtual void windowSignal(void* window, int peer, int slot, std::uint64_t value, int op);
  virtual void windowWaitSignal(void* window, int slot, std::uint64_t value);
  virtual std::uint64_t windowReadSignal(void* window, int slot);
  // Peer's window data mapped in this process, or nullptr (the default: none mapped).
  virtual void* windowPeerBase(void* window, int peer) {
    (void)window;
    (void)peer;
    return nullptr;
  }
  // The name of the algorithm the last collective ran ("" when the backend does not say).
  virtual const char* lastAlgorithm() const { return ""; }
  // What a call waits for now (comm/backend.h: waitState; op: room for opLen bytes); false
  // when none waits (or the backend does not say).
  virtual bool waitState(int* peer, double* seconds, char* op, std::size_t opLen) const {
    (void)peer;
    (void)seconds;
    (void)op;
    (void)opLen;
    return false;
  }

 private:
  [[noreturn]] void noWindows(const char* op) const {
    throwError(ErrorCode::kInvalidUsage, rank(), op, "this backend has no symmetric windows");
  }
};

inline void* Backend::windowCreate(std::size_t, int, void**) {
  noWindows("windowCreate");
}
inline void Backend::windowDestroy(void*) {
  noWindows("windowDestroy");
}
inline void Backend::windowPut(void*, int, std::size_t, const void*, std::size_t) {
  noWindows("windowPut");
}
inline void Backend::windowSignal(void*, int, int, std::uint64_t, int) {
  noWindows("windowSignal");
}
inline void Backend::windowWaitSignal(void*, int, std::uint64_t) {
  noWindows("windowWaitSignal");
}
inline std::uint64_t Backend::windowReadSignal(void*, int) {
  noWindows("windowReadSignal");
}

static_assert(epcommBackendSystemError == toResultCode(ErrorCode::kSystemError) &&
              epcommBackendInternalError == toResultCode(ErrorCode::kInternal) &&
              epcommBackendInvalidArgument == toResultCode(ErrorCode::kInvalidArgument) &&
              epcommBackendInvalidUsage == toResultCode(ErrorCode::kInvalidUsage) &&
              epcommBackendRemoteError == toResultCode(ErrorCode::kPeerLost) &&
              epcommBackendTimeout == toResultCode(ErrorCode::kTimeout));

// The value of one of the backend's knobs as the communicator resolved it (create args),
// or `fallback` where the caller hands none (an older libepcomm).
inline std::string knobValue(const epcommBackendCreateArgs& args, const char* name,
                             const char* fallback) {
  const size_t needed = offsetof(epcommBackendCreateArgs, knobCtx) + sizeof(args.knobCtx);
  if (args.structSize < needed || !args.knob) return fallback;
  const char* v = args.knob(args.knobCtx, name);
  return v ? std::string(v) : std::string(fallback);
}

// args.waitReportMs, or 0 where the caller hands none (an older libepcomm).
inline std::int64_t waitReportMs(const epcommBackendCreateArgs& args) {
  const size_t needed = offsetof(epcommBackendCreateArgs, waitReportMs) + sizeof(args.waitReportMs);
  return args.structSize >= needed ? args.waitReportMs : 0;
}

// The warning a wait logs every args.waitReportMs, worded alike on every backend: "rank 2:
// allReduce has waited 60.0 s for rank 3 (it fails at EPCOMM_TIMEOUT_MS=300000; ...)".
inline std::string waitReportText(int rank, const char* op, double waitedS, const std::string& whom,
                                  std::int64_t timeoutMs, std::int64_t reportMs) {
  char waited[32];
  std::snprintf(waited, sizeof waited, "%.1f", waitedS);
  char every[32];
  std::snprintf(every, sizeof every, "%g", static_cast<double>(reportMs) / 1000.0);
  const std::string limit = timeoutMs > 0
                                ? "it fails at EPCOMM_TIMEOUT_MS=" + std::to_string(timeoutMs)
                                : std::string("EPCOMM_TIMEOUT_MS=0: no deadline");
  return "rank " + std::to_string(rank) + ": " + op + " has waited " + waited + " s for " + whom +
         " (" + limit + "; reported every EPCOMM_WAIT_REPORT_S=" + every + " s)";
}

// What a call of one communicator waits for now (Backend::waitState): written by the waiting
// thread, read by any other. A wait records itself once it outlasts its first moments; `op`
// must be a string that lives as long as the program (the backends' call names are literals).
class WaitRecord {
 public:
  // Records a wait from now until the Scope ends.
  class Scope {
   public:
    Scope(WaitRecord& record, const char* op, int peer) : record_(record) {
      record_.write([&] {
        record_.peer_.store(peer, std::memory_order_relaxed);
        record_.sinceNs_.store(nowNs(), std::memory_order_relaxed);
        record_.op_.store(op, std::memory_order_relaxed);
      });
    }
    ~Scope() {
      record_.write([&] { record_.op_.store(nullptr, std::memory_order_relaxed); });
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    void setPeer(int peer) {
      record_.write([&] { record_.peer_.store(peer, std::memory_order_relaxed); });
    }

   private:
    WaitRecord& record_;
  };

  // The wait recorded now, if any; op copied into `op` (opLen bytes).
  bool read(int* peer, double* seconds, char* op, std::size_t opLen) const {
    const char* name = nullptr;
    if (!read(peer, seconds, &name)) return false;
    if (op && opLen > 0) std::snprintf(op, opLen, "%s", name);
    return true;
  }
  // A seqlock read (one writer: the waiting thread); false when no wait is recorded, or
  // when it kept changing under the reader.
  bool read(int* peer, double* seconds, const char** op) const {
    for (int attempt = 0; attempt < 8; ++attempt) {
      const std::uint64_t before = generation_.load(std::memory_order_acquire);
      if (before & 1) continue;  // a write in progress
      const char* name = op_.load(std::memory_order_relaxed);
      const int p = peer_.load(std::memory_order_relaxed);
      const std::int64_t since = sinceNs_.load(std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (generation_.load(std::memory_order_relaxed) != before) continue;
      if (!name) return false;
      *peer = p;
      *seconds = static_cast<double>(nowNs() - since) / 1e9;
      *op = name;
      return true;
    }
    return false;
  }

 private:
  static std::int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Odd while the fields change.
  template <typename Fn>
  void write(Fn&& fn) {
    const std::uint64_t g = generation_.load(std::memory_order_relaxed);
    generation_.store(g + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    fn();
    generation_.store(g + 2, std::memory_order_release);
  }
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<const char*> op_{nullptr};
  std::atomic<int> peer_{-1};
  std::atomic<std::int64_t> sinceNs_{0};
};

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
                                    uint64_t maxCountPerCall,
                                    const epcommBackendKnob* knobs = nullptr, size_t numKnobs = 0) {
  epcommBackendV1 t{};
  t.knobs = knobs;
  t.numKnobs = numKnobs;
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
  t.abortWithReason = [](void* s, const char* reason) -> int {
    return guarded(err(s), [&] { impl(s).abortWithReason(reason ? reason : ""); });
  };
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
  t.shrink = [](void* s, void** newState, int* newRank, int* newSize, int* keptRanks) {
    return guarded(err(s), [&] {
      *newState = nullptr;
      std::unique_ptr<Backend> child = impl(s).shrink(keptRanks);
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
  t.windowCreate = [](void* s, size_t bytes, int numSignals, void** window, void** localBase) {
    return guarded(err(s), [&] { *window = impl(s).windowCreate(bytes, numSignals, localBase); });
  };
  t.windowDestroy = [](void* s, void* w) {
    return guarded(err(s), [&] { impl(s).windowDestroy(w); });
  };
  t.windowPut = [](void* s, void* w, int peer, size_t offset, const void* src, size_t bytes) {
    return guarded(err(s), [&] { impl(s).windowPut(w, peer, offset, src, bytes); });
  };
  t.windowSignal = [](void* s, void* w, int peer, int slot, uint64_t value, int op) {
    return guarded(err(s), [&] { impl(s).windowSignal(w, peer, slot, value, op); });
  };
  t.windowWaitSignal = [](void* s, void* w, int slot, uint64_t value) {
    return guarded(err(s), [&] { impl(s).windowWaitSignal(w, slot, value); });
  };
  t.windowReadSignal = [](void* s, void* w, int slot, uint64_t* value) {
    return guarded(err(s), [&] { *value = impl(s).windowReadSignal(w, slot); });
  };
  t.windowPeerBase = [](void* s, void* w, int peer, void** base) {
    return guarded(err(s), [&] { *base = impl(s).windowPeerBase(w, peer); });
  };
  t.lastAlgorithm = [](void* s) -> const char* { return impl(s).lastAlgorithm(); };
  t.waitState = [](void* s, int* waiting, int* peer, double* seconds, char* op, size_t opLen) {
    return guarded(err(s), [&] {
      if (op && opLen > 0) op[0] = '\0';
      *waiting = impl(s).waitState(peer, seconds, op, opLen) ? 1 : 0;
    });
  };
  return t;
}

}  // namespace plugin_detail
}  // namespace epcomm

// MAX_COUNT: the most elements (or the largest displacement) one call may pass; 0: no limit.
#define EPCOMM_EXPORT_BACKEND(NAME, CAPABILITIES, MAX_COUNT, IMPL)                           \
  extern "C" __attribute__((visibility("default"))) const epcommBackendV1 epcommBackend_v1 = \
      ::epcomm::plugin_detail::makeTable<IMPL>(NAME, CAPABILITIES, MAX_COUNT);
// The same with the backend's knobs: KNOBS is a static array of epcommBackendKnob.
#define EPCOMM_EXPORT_BACKEND_WITH_KNOBS(NAME, CAPABILITIES, MAX_COUNT, IMPL, KNOBS)         \
  extern "C" __attribute__((visibility("default"))) const epcommBackendV1 epcommBackend_v1 = \
      ::epcomm::plugin_detail::makeTable<IMPL>(NAME, CAPABILITIES, MAX_COUNT, KNOBS,         \
                                               sizeof(KNOBS) / sizeof((KNOBS)[0]));
