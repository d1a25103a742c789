#include "backends/ucx/window.h"

#include <fmt/format.h>

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

}  // namespace

Window::Window(Worker& worker, std::size_t bytes, int numSignals, int rank)
    : worker_(worker), bytes_(bytes), numSignals_(numSignals) {
  const std::size_t dataBytes = roundUp(bytes, kAlign);
  const std::size_t total =
      dataBytes + roundUp(static_cast<std::size_t>(numSignals) * sizeof(std::uint64_t), kAlign) +
      kAlign;
  memory_ = static_cast<unsigned char*>(std::aligned_alloc(kAlign, total));
  if (!memory_) {
    throwError(ErrorCode::kSystemError, rank, "windowCreate",
               fmt::format("cannot allocate {} bytes for a window", total));
  }
  std::memset(memory_, 0, total);
  base_ = memory_;
  signals_ = reinterpret_cast<std::uint64_t*>(memory_ + dataBytes);
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  mp.address = memory_;
  mp.length = total;
  const ucs_status_t st = ucp_mem_map(worker_.context(), &mp, &memh_);
  if (st != UCS_OK) {
    std::free(memory_);
    failUcx(rank, "windowCreate", "registering the window (ucp_mem_map)", st);
  }
}

Window::~Window() {
  for (Remote& r : remotes_) {
    if (r.rkey) ucp_rkey_destroy(r.rkey);
  }
  if (abandoned_) return;
  if (memh_) ucp_mem_unmap(worker_.context(), memh_);
  std::free(memory_);
}

std::vector<unsigned char> Window::packedKey() const {
  void* packed = nullptr;
  std::size_t len = 0;
  const ucs_status_t st = ucp_rkey_pack(worker_.context(), memh_, &packed, &len);
  if (st != UCS_OK) failUcx(worker_.rank(), "windowCreate", "ucp_rkey_pack", st);
  std::vector<unsigned char> out(2 * sizeof(std::uint64_t) + len);
  const auto data = reinterpret_cast<std::uint64_t>(base_);
  const auto sig = reinterpret_cast<std::uint64_t>(signals_);
  std::memcpy(out.data(), &data, sizeof data);
  std::memcpy(out.data() + sizeof data, &sig, sizeof sig);
  std::memcpy(out.data() + 2 * sizeof data, packed, len);
  ucp_rkey_buffer_release(packed);
  return out;
}

void Window::connect(const std::vector<std::vector<unsigned char>>& keys,
                     const std::vector<int>& world, int rank) {
  remotes_.resize(keys.size());
  for (std::size_t r = 0; r < keys.size(); ++r) {
    Remote& remote = remotes_[r];
    const std::vector<unsigned char>& k = keys[r];
    if (k.size() < 2 * sizeof(std::uint64_t)) {
      throwError(ErrorCode::kInternal, rank, "windowCreate",
                 fmt::format("rank {} sent a window key of {} bytes", r, k.size()));
    }
    std::memcpy(&remote.data, k.data(), sizeof remote.data);
    std::memcpy(&remote.signals, k.data() + sizeof remote.data, sizeof remote.signals);
    remote.world = world[r];
    const ucs_status_t st = ucp_ep_rkey_unpack(worker_.endpoint(remote.world),
                                               k.data() + 2 * sizeof(std::uint64_t), &remote.rkey);
    if (st != UCS_OK) failUcx(rank, "windowCreate", "ucp_ep_rkey_unpack", st);
  }
}

void Window::put(int peer, std::size_t offset, const void* src, std::size_t bytes,
                 const WaitScope& scope) {
  if (bytes == 0) return;
  const Remote& r = remotes_[static_cast<std::size_t>(peer)];
  ucp_request_param_t p{};
  void* req = ucp_put_nbx(worker_.endpoint(r.world), src, bytes, r.data + offset, r.rkey, &p);
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
      r.signals + static_cast<std::uint64_t>(slot) * sizeof(std::uint64_t), r.rkey, &p);
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
