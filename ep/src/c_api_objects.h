// The objects behind the EP C API's opaque pointers (ep/epcomm_ep.h) and the helpers its two
// files share (ep/src/c_api.cpp: Buffer and low-latency; ep/src/c_api_normal.cpp: layout,
// normal dispatch / combine and handles). Internal: never installed.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/src/c_api_bridge.h"
#include "ep/buffer.h"
#include "ep/epcomm_ep.h"

struct epcommEpBuffer;

struct epcommEpHandle {
  epcommEpBuffer* buffer = nullptr;
  epcomm::ep::DispatchOutputs dispatch;  // the dispatch's outputs and its ep::DispatchHandle
  epcomm::ep::CombineOutputs combine;    // the last combine that reversed it
};

struct epcommEpHook {
  epcommEpBuffer* buffer = nullptr;
  std::function<void()> receive;
};

struct epcommEpBuffer {
  epcommComm_t comm = nullptr;
  std::unique_ptr<epcomm::ep::Buffer> impl;
  epcomm::ep::LayoutOutputs layout;
  // Live handles and hooks (released with the Buffer), and destroyed handles kept for reuse
  // so a steady stream of dispatches allocates nothing (at most kSpareHandles).
  std::vector<std::unique_ptr<epcommEpHandle>> handles;
  std::vector<std::unique_ptr<epcommEpHandle>> spare;
  std::vector<std::unique_ptr<epcommEpHook>> hooks;
};

namespace epcomm::ep::bridge {

constexpr std::size_t kSpareHandles = 2;

static_assert(sizeof(epcommBf16_t) == sizeof(epcomm::Bf16));

inline epcomm::Bf16* bf16(epcommBf16_t* p) {
  return reinterpret_cast<epcomm::Bf16*>(p);
}
inline const epcomm::Bf16* bf16(const epcommBf16_t* p) {
  return reinterpret_cast<const epcomm::Bf16*>(p);
}
inline epcommBf16_t* cBf16(epcomm::Bf16* p) {
  return reinterpret_cast<epcommBf16_t*>(p);
}

// A produced output array, as C sees it: never NULL, also with no elements (NULL in an
// output struct means "not produced", e.g. recvXInt8 without int8), so a caller can pass an
// empty array straight back (DeepEP: topk_weights=recv_topk_weights on a rank that received
// nothing).
template <typename T>
T* produced(T* data) {
  alignas(64) static T empty[1]{};
  return data ? data : empty;
}

// C-level problems of this rank; the first one is reported.
class Problems {
 public:
  void add(const std::string& what) {
    if (first_.empty()) first_ = what;
  }
  bool any() const { return !first_.empty(); }
  // A shape as an int; -1 (refused by the C++ checks) when it does not fit.
  int narrow(std::int64_t v, const char* name) {
    if (v >= INT_MIN && v <= INT_MAX) return static_cast<int>(v);
    add(fmt::format("{} {} does not fit in an int", name, v));
    return -1;
  }
  // The call's result: when this rank saw a C-level problem the (poisoned) call failed on
  // every rank; here the message names the real problem.
  epcommResult_t finish(epcommComm_t comm, const char* op, epcommResult_t rc) const {
    if (!any()) return rc;
    const epcomm::Communicator* c = epcomm::capi::communicatorFromHandle(comm);
    const std::string who = c ? fmt::format("epcomm rank {}", c->rank()) : "epcomm";
    return epcomm::capi::fail(comm, epcommInvalidArgument,
                              fmt::format("{}: {}: {}", who, op, first_));
  }

 private:
  std::string first_;
};

// epcommEpQuant_t <-> ep::Quant; an unknown value becomes one the C++ checks refuse on every
// rank. Default is the Buffer's setting in normal mode, bf16 in low-latency mode.
ep::Quant toQuant(int q, bool lowLatency);
int fromQuant(ep::Quant q);

// The Buffers, handles and hooks alive in this process, so that a destroyed (or never made)
// one passed back is an error, not a crash.
void addLive(const void* p);
void removeLive(const void* p) noexcept;
bool isLive(const void* p) noexcept;

// epcommInvalidArgument on this rank only: buffer is NULL or not live.
epcommResult_t badBuffer(const char* op, const void* buffer);

// Removes p from its owner's list (and from the live set); nullptr when it is not there.
template <typename T>
std::unique_ptr<T> detach(std::vector<std::unique_ptr<T>>& list, const T* p) noexcept {
  auto it = std::find_if(list.begin(), list.end(),
                         [p](const std::unique_ptr<T>& q) { return q.get() == p; });
  if (it == list.end()) return nullptr;
  std::unique_ptr<T> out = std::move(*it);
  list.erase(it);
  removeLive(p);
  return out;
}

}  // namespace epcomm::ep::bridge
