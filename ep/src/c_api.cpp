// The EP C API (ep/epcomm_ep.h) over ep::Buffer. No exception leaves this file; every call
// runs through libepcomm's C call machinery (comm/src/c_api_bridge.h), so epcommGetLastError,
// the in-flight count that epcommCommAbort / Destroy wait for and the result codes are the
// communicator's own.
//
// A problem only the C layer sees (a NULL struct, a shape that does not fit in an int, a bad
// config header, a handle of another Buffer) is turned into an input the C++ call refuses in
// its cross-rank agreement, so the call fails on every rank as any bad argument does; this
// rank's message then names the C-level problem.
#include "ep/epcomm_ep.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "comm/error.h"
#include "comm/src/c_api_bridge.h"
#include "ep/buffer.h"

namespace ep = epcomm::ep;
namespace capi = epcomm::capi;

struct epcommEpBuffer;

struct epcommEpHandle {
  epcommEpBuffer* buffer = nullptr;
  ep::DispatchOutputs dispatch;  // the dispatch's outputs and its ep::DispatchHandle
  ep::CombineOutputs combine;    // the last combine that reversed it
};

struct epcommEpHook {
  epcommEpBuffer* buffer = nullptr;
  std::function<void()> receive;
};

struct epcommEpBuffer {
  epcommComm_t comm = nullptr;
  std::unique_ptr<ep::Buffer> impl;
  ep::LayoutOutputs layout;
  // Live handles and hooks (released with the Buffer), and destroyed handles kept for reuse
  // so a steady stream of dispatches allocates nothing (at most kSpareHandles).
  std::vector<std::unique_ptr<epcommEpHandle>> handles;
  std::vector<std::unique_ptr<epcommEpHandle>> spare;
  std::vector<std::unique_ptr<epcommEpHook>> hooks;
};

namespace {

constexpr std::size_t kSpareHandles = 2;

static_assert(sizeof(epcommBf16_t) == sizeof(epcomm::Bf16));
static_assert(epcommEpModeAuto == static_cast<int>(ep::Mode::kAuto) &&
              epcommEpBatchDecode == static_cast<int>(ep::BatchKind::kDecode));

epcomm::Bf16* bf16(epcommBf16_t* p) {
  return reinterpret_cast<epcomm::Bf16*>(p);
}
const epcomm::Bf16* bf16(const epcommBf16_t* p) {
  return reinterpret_cast<const epcomm::Bf16*>(p);
}
epcommBf16_t* cBf16(epcomm::Bf16* p) {
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
    const epcomm::Communicator* c = capi::communicatorFromHandle(comm);
    const std::string who = c ? fmt::format("epcomm rank {}", c->rank()) : "epcomm";
    return capi::fail(comm, epcommInvalidArgument, fmt::format("{}: {}: {}", who, op, first_));
  }

 private:
  std::string first_;
};

ep::Quant toQuant(int q, bool lowLatency) {
  switch (q) {
    case epcommEpQuantDefault: return lowLatency ? ep::Quant::kNone : ep::Quant::kDefault;
    case epcommEpQuantNone: return ep::Quant::kNone;
    case epcommEpQuantInt8Group: return ep::Quant::kInt8Group;
    case epcommEpQuantInt8PerToken: return ep::Quant::kInt8PerToken;
    default: return static_cast<ep::Quant>(100);  // refused by the C++ checks on every rank
  }
}

int fromQuant(ep::Quant q) {
  switch (q) {
    case ep::Quant::kInt8Group: return epcommEpQuantInt8Group;
    case ep::Quant::kInt8PerToken: return epcommEpQuantInt8PerToken;
    default: return epcommEpQuantNone;
  }
}

// The Buffers, handles and hooks alive in this process, so that a destroyed (or never made)
// one passed back is an error, not a crash.
std::mutex gLiveMutex;
std::unordered_set<const void*> gLive;

void addLive(const void* p) {
  std::lock_guard<std::mutex> lock(gLiveMutex);
  gLive.insert(p);
}
void removeLive(const void* p) noexcept {
  std::lock_guard<std::mutex> lock(gLiveMutex);
  gLive.erase(p);
}
bool isLive(const void* p) noexcept {
  std::lock_guard<std::mutex> lock(gLiveMutex);
  return p && gLive.count(p) != 0;
}

epcommResult_t badBuffer(const char* op, const void* buffer) {
  return capi::fail(
      nullptr, epcommInvalidArgument,
      fmt::format("epcomm: {}: {}", op,
                  buffer ? "buffer is not a live Buffer (destroyed already?)" : "buffer is NULL"));
}

bool ownsHandle(const epcommEpBuffer* b, const epcommEpHandle* h) {
  return isLive(h) && h->buffer == b;
}

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

// A handle for the next dispatch: a spare one (its arrays keep their capacity) or a new one.
std::unique_ptr<epcommEpHandle> takeHandle(epcommEpBuffer* b) {
  if (b->spare.empty()) return std::make_unique<epcommEpHandle>();
  std::unique_ptr<epcommEpHandle> h = std::move(b->spare.back());
  b->spare.pop_back();
  return h;
}

// Publishes a hook (nullptr when fn is empty).
epcommEpHook_t keepHook(epcommEpBuffer* b, std::function<void()> fn) {
  if (!fn) return nullptr;
  b->hooks.reserve(b->hooks.size() + 1);
  auto hook = std::make_unique<epcommEpHook>();
  hook->buffer = b;
  hook->receive = std::move(fn);
  addLive(hook.get());
  b->hooks.push_back(std::move(hook));
  return b->hooks.back().get();
}

// The Buffer's settings: environment (through the communicator's Config), then the caller's.
ep::BufferConfig makeBufferConfig(const epcomm::Communicator& comm, const epcommEpConfig_t* c,
                                  Problems& problems) {
  ep::BufferConfig config = ep::BufferConfig::fromConfig(comm.config());
  if (!c) return config;
  const std::size_t needed = offsetof(epcommEpConfig_t, quantGroup) + sizeof(c->quantGroup);
  if (c->magic != EPCOMM_EP_CONFIG_MAGIC || c->size < needed || c->version < 1) {
    problems.add(
        "config was not initialised with EPCOMM_EP_CONFIG_INITIALIZER (bad size, magic "
        "or version)");
    return config;
  }
  if (c->normalBufferMiB > (1 << 20)) problems.add("config.normalBufferMiB must be <= 1048576");
  if (c->normalBufferMiB > 0 && c->normalBufferMiB <= (1 << 20)) {
    config.normalBytes = static_cast<std::size_t>(c->normalBufferMiB) << 20;
  }
  if (c->rounds >= 0) config.rounds = problems.narrow(c->rounds, "config.rounds");
  if (c->roundTokens >= 0)
    config.roundTokens = problems.narrow(c->roundTokens, "config.roundTokens");
  if (c->llMaxTokens >= 0)
    config.llMaxTokens = problems.narrow(c->llMaxTokens, "config.llMaxTokens");
  if (c->combineRounds >= 0) config.combineRounds = c->combineRounds != 0;
  if (c->int8 >= 0) config.int8 = c->int8 != 0;
  if (c->quantGroup >= 0) config.quantGroup = c->quantGroup;
  return config;
}

}  // namespace

#pragma GCC visibility push(default)
extern "C" {

epcommResult_t epcommEpBufferCreate(epcommComm_t comm, const epcommEpConfig_t* config,
                                    epcommEpBuffer_t* buffer) {
  epcomm::Communicator* c = capi::communicatorFromHandle(comm);
  if (!c) return capi::fail(nullptr, epcommInvalidArgument, "epcomm: epBufferCreate: comm is NULL");
  if (buffer) *buffer = nullptr;
  Problems problems;
  if (!buffer) problems.add("buffer (the output) is NULL");
  std::unique_ptr<epcommEpBuffer> b;
  const epcommResult_t rc = capi::call(comm, "epBufferCreate", [&] {
    ep::BufferConfig cfg = makeBufferConfig(*c, config, problems);
    if (problems.any()) cfg.llMaxTokens = 0;  // refused on every rank
    b = std::make_unique<epcommEpBuffer>();
    b->comm = comm;
    b->impl = std::make_unique<ep::Buffer>(*c, cfg);
    if (!problems.any()) addLive(b.get());
  });
  if (rc != epcommSuccess || problems.any()) return problems.finish(comm, "epBufferCreate", rc);
  *buffer = b.release();
  return epcommSuccess;
}

epcommResult_t epcommEpBufferDestroy(epcommEpBuffer_t buffer) {
  if (!buffer) return epcommSuccess;
  if (!isLive(buffer)) return badBuffer("epBufferDestroy", buffer);
  removeLive(buffer);
  for (const auto& h : buffer->handles) removeLive(h.get());
  for (const auto& h : buffer->hooks) removeLive(h.get());
  const epcommResult_t rc = capi::call(buffer->comm, "epBufferDestroy", [&] {
    buffer->hooks.clear();
    buffer->handles.clear();
    buffer->spare.clear();
    buffer->impl.reset();  // collective when the Buffer holds windows
  });
  delete buffer;
  return rc;
}

epcommResult_t epcommEpBufferGetConfig(epcommEpBuffer_t buffer, epcommEpConfig_t* config) {
  if (!isLive(buffer)) return badBuffer("epBufferGetConfig", buffer);
  // The caller's struct says how much of ours it has room for (an older, smaller version).
  const std::size_t needed = offsetof(epcommEpConfig_t, quantGroup) + sizeof(int);
  if (!config || config->magic != EPCOMM_EP_CONFIG_MAGIC || config->size < needed) {
    return capi::fail(buffer->comm, epcommInvalidArgument,
                      "epcomm: epBufferGetConfig: config is NULL or was not initialised with "
                      "EPCOMM_EP_CONFIG_INITIALIZER");
  }
  const ep::BufferConfig& c = buffer->impl->config();
  epcommEpConfig_t full = EPCOMM_EP_CONFIG_INITIALIZER;
  full.normalBufferMiB = static_cast<std::int64_t>(c.normalBytes >> 20);
  full.rounds = c.rounds;
  full.roundTokens = c.roundTokens;
  full.llMaxTokens = c.llMaxTokens;
  full.combineRounds = c.combineRounds ? 1 : 0;
  full.int8 = c.int8 ? 1 : 0;
  full.quantGroup = c.quantGroup;
  std::memcpy(config, &full, std::min(config->size, sizeof(full)));
  config->size = std::min(config->size, sizeof(full));
  return epcommSuccess;
}

epcommResult_t epcommEpResolveMode(epcommEpMode_t configured, epcommEpBatchKind_t batch,
                                   epcommEpMode_t* mode) {
  const int m = static_cast<int>(configured), k = static_cast<int>(batch);
  if (!mode || m < epcommEpModeNormal || m > epcommEpModeAuto || k < epcommEpBatchPrefill ||
      k > epcommEpBatchDecode) {
    return capi::fail(nullptr, epcommInvalidArgument,
                      "epcomm: epResolveMode: mode is NULL or configured / batch is not a value "
                      "of epcommEpMode_t / epcommEpBatchKind_t");
  }
  *mode = static_cast<epcommEpMode_t>(
      ep::resolveMode(static_cast<ep::Mode>(m), static_cast<ep::BatchKind>(k)));
  return epcommSuccess;
}

epcommResult_t epcommEpGetDispatchLayout(epcommEpBuffer_t buffer, const epcommEpLayoutInputs_t* in,
                                         epcommEpLayoutOutputs_t* out) {
  if (!isLive(buffer)) return badBuffer("epGetDispatchLayout", buffer);
  Problems problems;
  const epcommEpLayoutInputs_t none{};
  if (!in) problems.add("inputs are NULL");
  if (!out) problems.add("outputs are NULL");
  const epcommEpLayoutInputs_t& i = in ? *in : none;
  ep::LayoutInputs li;
  li.topkIdx = i.topkIdx;
  li.numTokens = problems.narrow(i.numTokens, "numTokens");
  li.numTopk = problems.narrow(i.numTopk, "numTopk");
  li.numExperts = problems.narrow(i.numExperts, "numExperts");
  if (problems.any()) li.numTopk = 0;  // refused on every rank
  if (out) *out = epcommEpLayoutOutputs_t{};
  const epcommResult_t rc = capi::call(buffer->comm, "epGetDispatchLayout", [&] {
    buffer->impl->getDispatchLayout(li, buffer->layout);
  });
  if (rc != epcommSuccess || problems.any())
    return problems.finish(buffer->comm, "epGetDispatchLayout", rc);
  const ep::LayoutOutputs& l = buffer->layout;
  out->numTokens = l.numTokens;
  out->numRanks = l.numRanks;
  out->numExperts = l.numExperts;
  out->numTokensPerRank = produced(l.numTokensPerRank.data());
  out->numTokensPerExpert = produced(l.numTokensPerExpert.data());
  out->isTokenInRank = produced(l.isTokenInRank.data());
  return epcommSuccess;
}

epcommResult_t epcommEpDispatch(epcommEpBuffer_t buffer, const epcommEpDispatchInputs_t* in,
                                epcommEpDispatchOutputs_t* out) {
  if (!isLive(buffer)) return badBuffer("epDispatch", buffer);
  Problems problems;
  const epcommEpDispatchInputs_t none{};
  if (!in) problems.add("inputs are NULL");
  if (!out) problems.add("outputs are NULL");
  if (out) *out = epcommEpDispatchOutputs_t{};
  const epcommEpDispatchInputs_t& i = in ? *in : none;
  if (i.handle && !ownsHandle(buffer, i.handle)) {
    problems.add("handle is not a live handle of this Buffer (destroyed, or of another Buffer)");
  }
  ep::DispatchInputs di;
  di.x = bf16(i.x);
  di.numTokens = problems.narrow(i.numTokens, "numTokens");
  di.hidden = problems.narrow(i.hidden, "hidden");
  di.topkIdx = i.topkIdx;
  di.topkWeights = i.topkWeights;
  di.numTopk = problems.narrow(i.numTopk, "numTopk");
  di.numExperts = problems.narrow(i.numExperts, "numExperts");
  di.handle = i.handle && !problems.any() ? &i.handle->dispatch.handle : nullptr;
  di.expertAlignment =
      i.expertAlignment == 0 ? 1 : problems.narrow(i.expertAlignment, "expertAlignment");
  di.quant = toQuant(i.quant, false);
  di.dequantize = i.dequantize != 0;
  if (problems.any()) di.hidden = 0;  // refused on every rank
  std::unique_ptr<epcommEpHandle> h;
  const epcommResult_t rc = capi::call(buffer->comm, "epDispatch", [&] {
    buffer->handles.reserve(buffer->handles.size() + 1);  // no throw once dispatched
    h = takeHandle(buffer);
    h->buffer = buffer;
    buffer->impl->dispatch(di, h->dispatch);
    if (!problems.any()) addLive(h.get());
  });
  if (rc != epcommSuccess || problems.any()) {
    if (h && buffer->spare.size() < kSpareHandles) buffer->spare.push_back(std::move(h));
    return problems.finish(buffer->comm, "epDispatch", rc);
  }
  ep::DispatchOutputs& d = h->dispatch;
  const bool int8 = ep::isInt8(d.quant);
  out->numRecvTokens = d.numRecvTokens;
  out->hidden = d.hidden;
  out->numTopk = d.numTopk;
  out->numScales = d.numScales;
  out->numLocalExperts = static_cast<std::int64_t>(d.numRecvTokensPerExpert.size());
  out->bytesSent = static_cast<std::int64_t>(d.bytesSent);
  out->quant = fromQuant(d.quant);
  out->recvX = !int8 || di.dequantize ? cBf16(produced(d.recvX.data())) : nullptr;
  out->recvXInt8 = int8 ? produced(d.recvXInt8.data()) : nullptr;
  out->recvScales = int8 ? produced(d.recvScales.data()) : nullptr;
  out->recvTopkIdx = produced(d.recvTopkIdx.data());
  out->recvTopkWeights = produced(d.recvTopkWeights.data());
  static_assert(sizeof(int) == sizeof(std::int32_t));
  out->numRecvTokensPerExpert =
      reinterpret_cast<const std::int32_t*>(produced(d.numRecvTokensPerExpert.data()));
  out->recvSrcIdx = produced(d.handle.recvSrcIdx.data());
  out->rankPrefix = d.handle.rankPrefix.data();
  h->combine.numTokens = 0;
  h->combine.combinedX.clear();
  h->combine.combinedTopkWeights.clear();
  out->handle = h.get();
  buffer->handles.push_back(std::move(h));
  return epcommSuccess;
}

epcommResult_t epcommEpCombine(epcommEpBuffer_t buffer, const epcommEpCombineInputs_t* in,
                               epcommEpCombineOutputs_t* out) {
  if (!isLive(buffer)) return badBuffer("epCombine", buffer);
  Problems problems;
  const epcommEpCombineInputs_t none{};
  if (!in) problems.add("inputs are NULL");
  if (!out) problems.add("outputs are NULL");
  if (out) *out = epcommEpCombineOutputs_t{};
  const epcommEpCombineInputs_t& i = in ? *in : none;
  if (i.handle && !ownsHandle(buffer, i.handle)) {
    problems.add("handle is not a live handle of this Buffer (destroyed, or of another Buffer)");
  }
  ep::CombineInputs ci;
  ci.x = bf16(i.x);
  ci.hidden = problems.narrow(i.hidden, "hidden");
  ci.topkWeights = i.topkWeights;
  ci.numTopk = problems.narrow(i.numTopk, "numTopk");
  ci.weighted = i.weighted != 0;
  ci.handle = i.handle && !problems.any() ? &i.handle->dispatch.handle : nullptr;  // none: refused
  ep::CombineOutputs scratch;
  ep::CombineOutputs& co = ci.handle ? i.handle->combine : scratch;
  const epcommResult_t rc =
      capi::call(buffer->comm, "epCombine", [&] { buffer->impl->combine(ci, co); });
  if (rc != epcommSuccess || problems.any()) return problems.finish(buffer->comm, "epCombine", rc);
  out->numTokens = co.numTokens;
  out->hidden = ci.handle->hidden;
  out->numTopk = ci.topkWeights || ci.numTopk > 0 ? ci.numTopk : 0;
  out->bytesSent = static_cast<std::int64_t>(co.bytesSent);
  out->combinedX = cBf16(produced(co.combinedX.data()));
  out->combinedTopkWeights = out->numTopk > 0 ? produced(co.combinedTopkWeights.data()) : nullptr;
  return epcommSuccess;
}

epcommResult_t epcommEpHandleDestroy(epcommEpHandle_t handle) {
  if (!handle) return epcommSuccess;
  if (!isLive(handle)) {
    return capi::fail(nullptr, epcommInvalidArgument,
                      "epcomm: epHandleDestroy: not a live handle (destroyed already, or its "
                      "Buffer was)");
  }
  epcommEpBuffer* b = handle->buffer;
  std::unique_ptr<epcommEpHandle> h = detach(b->handles, handle);
  if (b->spare.size() < kSpareHandles) {
    try {
      b->spare.push_back(std::move(h));
    } catch (...) {  // out of memory: h is simply freed
    }
  }
  return epcommSuccess;
}

epcommResult_t epcommEpLowLatencyDispatch(epcommEpBuffer_t buffer,
                                          const epcommEpLowLatencyDispatchInputs_t* in,
                                          epcommEpLowLatencyDispatchOutputs_t* out) {
  if (!isLive(buffer)) return badBuffer("epLowLatencyDispatch", buffer);
  Problems problems;
  const epcommEpLowLatencyDispatchInputs_t none{};
  if (!in) problems.add("inputs are NULL");
  if (!out) problems.add("outputs are NULL");
  if (out) *out = epcommEpLowLatencyDispatchOutputs_t{};
  const epcommEpLowLatencyDispatchInputs_t& i = in ? *in : none;
  ep::LowLatencyDispatchInputs li;
  li.x = bf16(i.x);
  li.numTokens = problems.narrow(i.numTokens, "numTokens");
  li.hidden = problems.narrow(i.hidden, "hidden");
  li.topkIdx = i.topkIdx;
  li.numTopk = problems.narrow(i.numTopk, "numTopk");
  li.numExperts = problems.narrow(i.numExperts, "numExperts");
  li.quant = toQuant(i.quant, true);
  li.dequantize = i.dequantize != 0;
  li.returnRecvHook = i.returnRecvHook != 0;
  if (problems.any()) li.hidden = 0;  // refused on every rank
  ep::LowLatencyDispatchOutputs lo;
  epcommEpHook_t hook = nullptr;
  const epcommResult_t rc = capi::call(buffer->comm, "epLowLatencyDispatch", [&] {
    buffer->hooks.reserve(buffer->hooks.size() + 1);  // keepHook cannot fail after the send
    buffer->impl->lowLatencyDispatch(li, lo);
    hook = keepHook(buffer, std::move(lo.hook));
  });
  if (rc != epcommSuccess || problems.any()) {
    return problems.finish(buffer->comm, "epLowLatencyDispatch", rc);
  }
  out->handle = {lo.handle.slot,      static_cast<std::int64_t>(lo.handle.sequence),
                 lo.handle.numTokens, lo.handle.numTopk,
                 lo.handle.hidden,    lo.handle.numExperts};
  out->hook = hook;
  out->numLocalExperts = lo.numLocalExperts;
  out->numRanks = lo.numRanks;
  out->maxTokens = lo.maxTokens;
  out->hidden = lo.hidden;
  out->numScales = lo.numScales;
  out->bytesSent = static_cast<std::int64_t>(lo.bytesSent);
  out->quant = fromQuant(lo.quant);
  out->recvX = cBf16(lo.recvX);
  out->recvXInt8 = lo.recvXInt8;
  out->recvScales = lo.recvScales;
  out->recvCount = lo.recvCount;
  out->srcInfo = lo.srcInfo;
  out->layoutRange = lo.layoutRange;
  return epcommSuccess;
}

namespace {

// The C++ handle of a C one; slot -1 (refused as stale) when a field does not fit.
ep::LowLatencyHandle toLowLatencyHandle(const epcommEpLowLatencyHandle_t& h, Problems& problems) {
  ep::LowLatencyHandle l;
  l.slot = problems.narrow(h.slot, "handle.slot");
  l.sequence = static_cast<std::uint64_t>(h.sequence);
  l.numTokens = problems.narrow(h.numTokens, "handle.numTokens");
  l.numTopk = problems.narrow(h.numTopk, "handle.numTopk");
  l.hidden = problems.narrow(h.hidden, "handle.hidden");
  l.numExperts = problems.narrow(h.numExperts, "handle.numExperts");
  if (problems.any()) l.slot = -1;
  return l;
}

}  // namespace

epcommResult_t epcommEpLowLatencyCombine(epcommEpBuffer_t buffer,
                                         const epcommEpLowLatencyCombineInputs_t* in,
                                         epcommEpLowLatencyCombineOutputs_t* out) {
  if (!isLive(buffer)) return badBuffer("epLowLatencyCombine", buffer);
  Problems problems;
  const epcommEpLowLatencyCombineInputs_t none{};
  if (!in) problems.add("inputs are NULL");
  if (!out) problems.add("outputs are NULL");
  if (out) *out = epcommEpLowLatencyCombineOutputs_t{};
  const epcommEpLowLatencyCombineInputs_t& i = in ? *in : none;
  ep::LowLatencyCombineInputs li;
  li.x = bf16(i.x);
  li.topkIdx = i.topkIdx;
  li.topkWeights = i.topkWeights;
  li.handle = toLowLatencyHandle(i.handle, problems);
  li.zeroCopy = i.zeroCopy != 0;
  li.out = bf16(i.out);
  li.returnRecvHook = i.returnRecvHook != 0;
  if (problems.any()) li.handle.slot = -1;  // refused on every rank
  ep::LowLatencyCombineOutputs lo;
  epcommEpHook_t hook = nullptr;
  const epcommResult_t rc = capi::call(buffer->comm, "epLowLatencyCombine", [&] {
    buffer->hooks.reserve(buffer->hooks.size() + 1);
    buffer->impl->lowLatencyCombine(li, lo);
    hook = keepHook(buffer, std::move(lo.hook));
  });
  if (rc != epcommSuccess || problems.any()) {
    return problems.finish(buffer->comm, "epLowLatencyCombine", rc);
  }
  out->hook = hook;
  out->numTokens = lo.numTokens;
  out->hidden = li.handle.hidden;
  out->bytesSent = static_cast<std::int64_t>(lo.bytesSent);
  out->combinedX = cBf16(lo.combinedX);
  return epcommSuccess;
}

epcommResult_t epcommEpLowLatencyCombineBuffer(epcommEpBuffer_t buffer,
                                               const epcommEpLowLatencyHandle_t* handle,
                                               epcommBf16_t** combineBuffer) {
  if (!isLive(buffer)) return badBuffer("epLowLatencyCombineBuffer", buffer);
  if (!handle || !combineBuffer) {
    return capi::fail(buffer->comm, epcommInvalidArgument,
                      "epcomm: epLowLatencyCombineBuffer: handle or combineBuffer is NULL");
  }
  *combineBuffer = nullptr;
  Problems problems;
  const ep::LowLatencyHandle h = toLowLatencyHandle(*handle, problems);
  const epcommResult_t rc = capi::call(buffer->comm, "epLowLatencyCombineBuffer", [&] {
    *combineBuffer = cBf16(buffer->impl->lowLatencyCombineBuffer(h));
  });
  return problems.finish(buffer->comm, "epLowLatencyCombineBuffer", rc);
}

epcommResult_t epcommEpHookRun(epcommEpHook_t hook) {
  if (!isLive(hook)) {
    return capi::fail(nullptr, epcommInvalidArgument,
                      hook ? "epcomm: epHookRun: not a live hook (run or destroyed already?)"
                           : "epcomm: epHookRun: hook is NULL");
  }
  epcommEpBuffer* b = hook->buffer;
  std::unique_ptr<epcommEpHook> h = detach(b->hooks, hook);
  return capi::call(b->comm, "epHookRun", [&] { h->receive(); });
}

epcommResult_t epcommEpHookDestroy(epcommEpHook_t hook) {
  if (!hook) return epcommSuccess;
  if (!isLive(hook)) {
    return capi::fail(nullptr, epcommInvalidArgument,
                      "epcomm: epHookDestroy: not a live hook (run or destroyed already?)");
  }
  detach(hook->buffer->hooks, hook);
  return epcommSuccess;
}

}  // extern "C"
#pragma GCC visibility pop
