#include "backends/ucx/window.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "comm/backend.h"
#include "comm/error.h"

namespace epcomm::ucx {
namespace {

constexpr std::size_t kAlign = 64;

std::size_t roundUp(std::size_t n, std::size_t a) {
  return (n + a - 1) / a * a;
}

[[noreturn]] void failUcx(int rank, const char* op, const char* what, ucs_status_t status) {
  throwError(ErrorCode::kSystemError, rank, op,
             fmt::format("{} failed: {}", what, ucs_status_string(status)));
}

// Registers [address, address + length) with the worker's context.
ucp_mem_h mapMemory(Worker& worker, void* address, std::size_t length, int rank) {
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = address;
  mp.length = length;
  ucp_mem_h memh = nullptr;
  const ucs_status_t st = ucp_mem_map(worker.context(), &mp, &memh);
  if (st != UCS_OK) failUcx(rank, "windowCreate", "registering the window (ucp_mem_map)", st);
  return memh;
}

// Appends a packed remote key of memh, preceded by its length.
void appendKey(Worker& worker, ucp_mem_h memh, std::vector<unsigned char>& out) {
  void* packed = nullptr;
  std::size_t len = 0;
  const ucs_status_t st = ucp_rkey_pack(worker.context(), memh, &packed, &len);
  if (st != UCS_OK) failUcx(worker.rank(), "windowCreate", "ucp_rkey_pack", st);
  const auto n = static_cast<std::uint64_t>(len);
  const std::size_t at = out.size();
  out.resize(at + sizeof n + len);
  std::memcpy(out.data() + at, &n, sizeof n);
  std::memcpy(out.data() + at + sizeof n, packed, len);
  ucp_rkey_buffer_release(packed);
}

}  // namespace

Window::Window(Worker& worker, std::size_t bytes, int numSignals, int rank, void* over)
    : worker_(worker), bytes_(bytes), numSignals_(numSignals) {
  // Regions of at least one line, so that a zero-byte window still registers (and packs a key).
  const std::size_t dataBytes = std::max(roundUp(bytes, kAlign), kAlign);
  const std::size_t signalBytes =
      std::max(roundUp(static_cast<std::size_t>(numSignals) * sizeof(std::uint64_t), kAlign), kAlign);
  // A zero-byte window over the caller's memory registers a line of its own: nothing can be
  // put into it, and the caller's pointer may have no byte behind it.
  if (over == nullptr || bytes == 0) {
    ownData_ = static_cast<unsigned char*>(std::aligned_alloc(kAlign, dataBytes));
    if (!ownData_) {
      throwError(ErrorCode::kSystemError, rank, "windowCreate",
                 fmt::format("cannot allocate {} bytes for a window", dataBytes));
    }
    std::memset(ownData_, 0, dataBytes);
  }
  base_ = over ? over : ownData_;
  signals_ = static_cast<std::uint64_t*>(std::aligned_alloc(kAlign, signalBytes));
  if (!signals_) {
    std::free(ownData_);
    throwError(ErrorCode::kSystemError, rank, "windowCreate",
               fmt::format("cannot allocate {} bytes for a window's signals", signalBytes));
  }
  std::memset(signals_, 0, signalBytes);
  try {
    dataMemh_ = ownData_ ? mapMemory(worker_, ownData_, dataBytes, rank)
                         : mapMemory(worker_, over, bytes, rank);
    signalMemh_ = mapMemory(worker_, signals_, signalBytes, rank);
  } catch (...) {
    if (dataMemh_) ucp_mem_unmap(worker_.context(), dataMemh_);
    std::free(signals_);
    std::free(ownData_);
    throw;
  }
}

Window::~Window() {
  for (Remote& r : remotes_) {
    if (r.dataKey) ucp_rkey_destroy(r.dataKey);
    if (r.signalKey) ucp_rkey_destroy(r.signalKey);
  }
  if (abandoned_) return;
  ucp_mem_unmap(worker_.context(), dataMemh_);
  ucp_mem_unmap(worker_.context(), signalMemh_);
  std::free(signals_);
  std::free(ownData_);
}

// [data address][signal address][data key length][data key][signal key length][signal key]
std::vector<unsigned char> Window::packedKey() const {
  std::vector<unsigned char> out(2 * sizeof(std::uint64_t));
  const auto data = reinterpret_cast<std::uint64_t>(base_);
  const auto sig = reinterpret_cast<std::uint64_t>(signals_);
  std::memcpy(out.data(), &data, sizeof data);
  std::memcpy(out.data() + sizeof data, &sig, sizeof sig);
  appendKey(worker_, dataMemh_, out);
  appendKey(worker_, signalMemh_, out);
  return out;
}

void Window::connect(const std::vector<std::vector<unsigned char>>& keys,
                     const std::vector<int>& world, int rank) {
  remotes_.resize(keys.size());
  for (std::size_t r = 0; r < keys.size(); ++r) {
    Remote& remote = remotes_[r];
    const std::vector<unsigned char>& k = keys[r];
    const auto bad = [&] {
      throwError(ErrorCode::kInternal, rank, "windowCreate",
                 fmt::format("rank {} sent a malformed window key of {} bytes", r, k.size()));
    };
    std::size_t at = 2 * sizeof(std::uint64_t);
    if (k.size() < at) bad();
    std::memcpy(&remote.data, k.data(), sizeof remote.data);
    std::memcpy(&remote.signals, k.data() + sizeof remote.data, sizeof remote.signals);
    remote.world = world[r];
    // Unpacks the next length-prefixed key.
    const auto unpack = [&](ucp_rkey_h& out) {
      std::uint64_t len = 0;
      if (k.size() - at < sizeof len) bad();
      std::memcpy(&len, k.data() + at, sizeof len);
      at += sizeof len;
      if (k.size() - at < len) bad();
      const ucs_status_t st = ucp_ep_rkey_unpack(worker_.endpoint(remote.world), k.data() + at, &out);
      if (st != UCS_OK) failUcx(rank, "windowCreate", "ucp_ep_rkey_unpack", st);
      at += len;
    };
    unpack(remote.dataKey);
    unpack(remote.signalKey);
  }
}

void Window::put(int peer, std::size_t offset, const void* src, std::size_t bytes,
                 const WaitScope& scope) {
  if (bytes == 0) return;
  const Remote& r = remotes_[static_cast<std::size_t>(peer)];
  ucp_request_param_t p{};
  void* req = ucp_put_nbx(worker_.endpoint(r.world), src, bytes, r.data + offset, r.dataKey, &p);
  worker_.waitRequest(req, r.world, scope);
}

void Window::signal(int peer, int slot, std::uint64_t value, int op, const WaitScope& scope) {
  const Remote& r = remotes_[static_cast<std::size_t>(peer)];
  // Every earlier put of this worker lands before the atomic.
  const ucs_status_t fenced = ucp_worker_fence(worker_.handle());
  if (fenced != UCS_OK) failUcx(scope.rank, scope.op, "ucp_worker_fence", fenced);
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE;
  p.datatype = ucp_dt_make_contig(sizeof(std::uint64_t));
  std::uint64_t operand = value;
  ucp_atomic_op_t aop = UCP_ATOMIC_OP_ADD;
  if (op == EPCOMM_SIGNAL_SET) {
    aop = UCP_ATOMIC_OP_SWAP;
    p.op_attr_mask |= UCP_OP_ATTR_FIELD_REPLY_BUFFER;
    p.reply_buffer = &reply_;
  }
  void* req = ucp_atomic_op_nbx(
      worker_.endpoint(r.world), aop, &operand, 1,
      r.signals + static_cast<std::uint64_t>(slot) * sizeof(std::uint64_t), r.signalKey, &p);
  worker_.waitRequest(req, r.world, scope);
}

std::uint64_t Window::readSignal(int slot) const {
  return __atomic_load_n(&signals_[slot], __ATOMIC_ACQUIRE);
}

void Window::waitSignal(int slot, std::uint64_t value, const WaitScope& scope) {
  const std::string what = fmt::format("signal slot {} to reach {}", slot, value);
  worker_.progressUntil([&] { return readSignal(slot) >= value; }, scope, what.c_str());
}

void Window::flush(const WaitScope& scope) {
  ucp_request_param_t p{};
  void* req = ucp_worker_flush_nbx(worker_.handle(), &p);
  worker_.waitRequest(req, -1, scope);
}

}  // namespace epcomm::ucx
