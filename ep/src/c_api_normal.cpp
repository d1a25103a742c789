// The EP C API's layout and normal mode (ep/epcomm_ep.h): getDispatchLayout, dispatch,
// combine and handles, over ep::Buffer; conventions as in ep/src/c_api.cpp.
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "ep/src/c_api_objects.h"

namespace ep = epcomm::ep;
namespace capi = epcomm::capi;
using namespace epcomm::ep::bridge;

namespace {

bool ownsHandle(const epcommEpBuffer* b, const epcommEpHandle* h) {
  return isLive(h) && h->buffer == b;
}

// A handle for the next dispatch: a spare one (its arrays keep their capacity) or a new one.
std::unique_ptr<epcommEpHandle> takeHandle(epcommEpBuffer* b) {
  if (b->spare.empty()) return std::make_unique<epcommEpHandle>();
  std::unique_ptr<epcommEpHandle> h = std::move(b->spare.back());
  b->spare.pop_back();
  return h;
}

using Extras = epcommEpDispatchExtras_t;
constexpr std::size_t kExtrasHeader = offsetof(Extras, isTokenInRank);
constexpr std::uint32_t kExtrasMaxSize = 4096;
// Where each field after the header ends, in order: a field is read only when the caller's
// structSize covers all of it.
constexpr std::size_t kExtrasFieldEnds[] = {
    offsetof(Extras, isTokenInRank) + sizeof(Extras::isTokenInRank),
    offsetof(Extras, numTokensPerExpert) + sizeof(Extras::numTokensPerExpert),
    offsetof(Extras, xInt8) + sizeof(Extras::xInt8),
    offsetof(Extras, xScales) + sizeof(Extras::xScales),
    offsetof(Extras, scalesTokenStride) + sizeof(Extras::scalesTokenStride),
    offsetof(Extras, scalesGroupStride) + sizeof(Extras::scalesGroupStride),
    offsetof(Extras, numWorstTokens) + sizeof(Extras::numWorstTokens),
};
static_assert(kExtrasHeader == 8 && kExtrasFieldEnds[6] == sizeof(Extras));

// The caller's extras (NULL: none) in this library's layout: the fields its structSize
// covers, defaults (zero) for the rest. A bad header or a non-zero byte this library does
// not know is a problem.
Extras readExtras(const Extras* e, Problems& problems) {
  Extras x{};
  if (!e) return x;
  const std::uint32_t size = e->structSize;
  if (size < kExtrasHeader || size > kExtrasMaxSize) {
    problems.add(fmt::format(
        "extras.structSize {} is not a struct size: set it to sizeof(epcommEpDispatchExtras_t) "
        "({} with this library's header)",
        size, sizeof(Extras)));
    return x;
  }
  if (e->reserved != 0) problems.add(fmt::format("extras.reserved {} must be 0", e->reserved));
  std::size_t covered = kExtrasHeader;
  for (const std::size_t end : kExtrasFieldEnds) covered = end <= size ? end : covered;
  std::memcpy(&x, e, covered);
  const auto* bytes = reinterpret_cast<const unsigned char*>(e);
  for (std::size_t b = sizeof(Extras); b < size; ++b) {
    if (bytes[b] == 0) continue;
    problems.add(fmt::format(
        "extras.structSize {} is larger than this library's epcommEpDispatchExtras_t ({} "
        "bytes) and its byte {} is not 0: an option this library does not have",
        size, sizeof(Extras), b));
    break;
  }
  return x;
}

}  // namespace

#pragma GCC visibility push(default)
extern "C" {

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
  return epcommEpDispatchEx(buffer, in, nullptr, out);
}

epcommResult_t epcommEpDispatchEx(epcommEpBuffer_t buffer, const epcommEpDispatchInputs_t* in,
                                  const epcommEpDispatchExtras_t* extras,
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
  const Extras x = readExtras(extras, problems);
  di.isTokenInRank = x.isTokenInRank;
  di.numTokensPerExpert = x.numTokensPerExpert;
  di.xInt8 = x.xInt8;
  di.xScales = x.xScales;
  di.scalesTokenStride = x.scalesTokenStride;
  di.scalesGroupStride = x.scalesGroupStride;
  if (x.scalesTokenStride == 0 && x.scalesGroupStride == 0) {  // row-major
    di.scalesTokenStride = ep::numScales(buffer->impl->config().normalQuant(di.quant), di.hidden);
    di.scalesGroupStride = 1;
  }
  di.numWorstTokens = problems.narrow(x.numWorstTokens, "extras.numWorstTokens");
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

}  // extern "C"
#pragma GCC visibility pop
