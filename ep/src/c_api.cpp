// The EP C API (ep/epcomm_ep.h) over ep::Buffer: the Buffer and low-latency mode here, normal
// mode in ep/src/c_api_normal.cpp, the objects both use in ep/src/c_api_objects.h. No
// exception leaves these files; every call runs through libepcomm's C call machinery
// (comm/src/c_api_bridge.h), so epcommGetLastError, the in-flight count that
// epcommCommAbort / Destroy wait for and the result codes are the communicator's own.
//
// A problem only the C layer sees (a NULL struct, a shape that does not fit in an int, a bad
// config header, a handle of another Buffer) is turned into an input the C++ call refuses in
// its cross-rank agreement, so the call fails on every rank as any bad argument does; this
// rank's message then names the C-level problem.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "comm/error.h"
#include "ep/src/c_api_objects.h"

namespace ep = epcomm::ep;
namespace capi = epcomm::capi;
using namespace epcomm::ep::bridge;

static_assert(epcommEpModeAuto == static_cast<int>(ep::Mode::kAuto) &&
              epcommEpBatchDecode == static_cast<int>(ep::BatchKind::kDecode));

namespace epcomm::ep::bridge {

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

namespace {

std::mutex gLiveMutex;
std::unordered_set<const void*> gLive;

}  // namespace

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

}  // namespace epcomm::ep::bridge

namespace {

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
  const std::size_t withMask = offsetof(epcommEpConfig_t, maskKeptRanks) + sizeof(c->maskKeptRanks);
  if (c->size >= withMask && (c->maskOriginalRanks != 0 || c->maskKeptRanks)) {
    if (c->maskOriginalRanks <= 0 || !c->maskKeptRanks) {
      problems.add(
          "config.maskOriginalRanks and config.maskKeptRanks go together (both set, or "
          "0 and NULL)");
    } else {
      config.mask.originalRanks = c->maskOriginalRanks;
      config.mask.keptRanks.assign(c->maskKeptRanks, c->maskKeptRanks + comm.size());
    }
  }
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
  full.maskOriginalRanks = c.mask.originalRanks;
  full.maskKeptRanks = c.mask.keptRanks.empty() ? nullptr : c.mask.keptRanks.data();
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
