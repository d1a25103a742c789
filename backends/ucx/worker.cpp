#include "backends/ucx/worker.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "comm/backend_plugin.h"
#include "comm/error.h"

namespace epcomm::ucx {
namespace {

std::int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int localName(const std::vector<int>* worldToLocal, int worldRank) {
  return worldToLocal ? (*worldToLocal)[static_cast<std::size_t>(worldRank)] : worldRank;
}

[[noreturn]] void failUcx(int rank, const char* op, const char* what, ucs_status_t status) {
  throwError(ErrorCode::kSystemError, rank, op,
             fmt::format("{} failed: {}", what, ucs_status_string(status)));
}

// A request of this worker that failed on a lost peer, or a peer the error handler named.
bool isPeerFailure(ucs_status_t status) {
  return status == UCS_ERR_CONNECTION_RESET || status == UCS_ERR_ENDPOINT_TIMEOUT ||
         status == UCS_ERR_UNREACHABLE || status == UCS_ERR_CANCELED ||
         status == UCS_ERR_REJECTED || status == UCS_ERR_IO_ERROR;
}

constexpr std::uint64_t kFullMask = ~std::uint64_t{0};
// How long a failed wait keeps progressing to learn of other lost members (failLost).
constexpr std::int64_t kLossGraceNs = 200'000'000;
// How long closing the endpoints may wait for peers to acknowledge what this rank sent.
constexpr std::int64_t kCloseLimitNs = 3'000'000'000;

}  // namespace

Worker::Worker(const WorkerOptions& options, const epcommBackendBootstrap& bootstrap)
    : rank_(options.rank),
      size_(options.size),
      timeoutMs_(options.timeoutMs),
      reportMs_(options.reportMs),
      log_(options.log),
      lost_(new std::atomic<int>[static_cast<std::size_t>(options.size)]) {
  for (int r = 0; r < size_; ++r) lost_[static_cast<std::size_t>(r)].store(0);
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) failUcx(rank_, "init", "ucp_config_read", st);
  if (!options.netDevice.empty()) {
    st = ucp_config_modify(config, "NET_DEVICES", options.netDevice.c_str());
    if (st != UCS_OK) {
      ucp_config_release(config);
      throwError(ErrorCode::kInvalidArgument, rank_, "init",
                 fmt::format("UCX refused NET_DEVICES={} (the interface EPCOMM_SOCKET_IFNAME / "
                             "HCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME / HCCL_IF_IP selected): {}",
                             options.netDevice, ucs_status_string(st)));
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_RMA | UCP_FEATURE_AMO64;
  params.mt_workers_shared = 0;
  st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (st != UCS_OK) failUcx(rank_, "init", "ucp_init", st);
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_MULTI;
  st = ucp_worker_create(context_, &wp, &worker_);
  if (st != UCS_OK) {
    ucp_cleanup(context_);
    failUcx(rank_, "init", "ucp_worker_create", st);
  }
  ucp_worker_attr_t attr{};
  attr.field_mask = UCP_WORKER_ATTR_FIELD_THREAD_MODE;
  if (ucp_worker_query(worker_, &attr) == UCS_OK && attr.thread_mode != UCS_THREAD_MODE_MULTI) {
    log(3,
        "ucx: this UCX gives no multi-thread worker: use a communicator and its splits "
        "from one thread at a time");
  }
  try {
    connect(bootstrap);
  } catch (...) {
    troubled_.store(true);
    if (closeEndpoints()) {
      ucp_worker_destroy(worker_);
      ucp_cleanup(context_);
    }
    throw;
  }
}

Worker::~Worker() {
  if (!closeEndpoints()) {
    log(3,
        "ucx: peers did not acknowledge closing within the limit; the UCX worker is left to "
        "the process's exit");
    return;
  }
  if (worker_) ucp_worker_destroy(worker_);
  if (context_) ucp_cleanup(context_);
}

void Worker::log(int level, const std::string& message) const {
  if (log_) log_(level, message.c_str());
}

void Worker::connect(const epcommBackendBootstrap& bootstrap) {
  ucp_address_t* address = nullptr;
  std::size_t length = 0;
  ucs_status_t st = ucp_worker_get_address(worker_, &address, &length);
  if (st != UCS_OK) failUcx(rank_, "init", "ucp_worker_get_address", st);
  const auto n = static_cast<std::size_t>(size_);
  std::vector<std::uint64_t> lengths(n);
  const std::uint64_t mine = length;
  if (bootstrap.allGather(bootstrap.ctx, &mine, lengths.data(), sizeof mine) != 0) {
    ucp_worker_release_address(worker_, address);
    throwError(ErrorCode::kSystemError, rank_, "init",
               "the bootstrap all-gather of UCX worker address lengths failed");
  }
  const std::size_t stride = *std::max_element(lengths.begin(), lengths.end());
  std::vector<unsigned char> padded(stride, 0), all(stride * n);
  std::memcpy(padded.data(), address, length);
  ucp_worker_release_address(worker_, address);
  if (bootstrap.allGather(bootstrap.ctx, padded.data(), all.data(), stride) != 0) {
    throwError(ErrorCode::kSystemError, rank_, "init",
               "the bootstrap all-gather of UCX worker addresses failed");
  }
  errorArgs_.resize(n);
  endpoints_.assign(n, nullptr);
  for (std::size_t r = 0; r < n; ++r) {
    errorArgs_[r] = {this, static_cast<int>(r)};
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER;
    ep.address = reinterpret_cast<const ucp_address_t*>(all.data() + r * stride);
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = &Worker::onPeerError;
    ep.err_handler.arg = &errorArgs_[r];
    st = ucp_ep_create(worker_, &ep, &endpoints_[r]);
    if (st != UCS_OK) {
      endpoints_[r] = nullptr;
      throwError(ErrorCode::kSystemError, rank_, "init",
                 fmt::format("connecting to rank {} (ucp_ep_create) failed: {}", r,
                             ucs_status_string(st)));
    }
  }
  // Wire every endpoint up now: one empty control message each way with every peer, so an
  // unreachable peer fails init (naming it) rather than the first collective.
  std::vector<Op> ops;
  ops.reserve(2 * n);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    ops.push_back(recv(r, makeTag(0, TagClass::kControl, r, 0), nullptr, 0));
    ops.push_back(send(r, makeTag(0, TagClass::kControl, rank_, 0), nullptr, 0));
  }
  const WaitScope scope{rank_, "init", nullptr, nullptr};
  waitAll(ops.data(), ops.size(), scope);
  logTransports();
}

// UCX says which transports an endpoint's lanes use only through ucp_ep_print_info; the
// lines naming lanes ("lane[0]: ... tcp/eth0 ...") are kept, one log line per peer.
void Worker::logTransports() {
  for (int r = 0; r < size_; ++r) {
    char* text = nullptr;
    std::size_t len = 0;
    FILE* stream = open_memstream(&text, &len);
    if (!stream) return;
    ucp_ep_print_info(endpoints_[static_cast<std::size_t>(r)], stream);
    std::fclose(stream);
    std::string lanes;
    const std::string all(text ? text : "", len);
    std::free(text);
    std::size_t pos = 0;
    while (pos < all.size()) {
      std::size_t end = all.find('\n', pos);
      if (end == std::string::npos) end = all.size();
      std::string line = all.substr(pos, end - pos);
      pos = end + 1;
      const std::size_t at = line.find("lane[");
      if (at == std::string::npos) continue;
      line = line.substr(at);
      line.erase(std::unique(line.begin(), line.end(),
                             [](char a, char b) { return a == ' ' && b == ' '; }),
                 line.end());
      if (!lanes.empty()) lanes += "; ";
      lanes += line;
    }
    log(2, fmt::format("ucx: rank {} -> rank {}: {}", rank_, r, lanes.empty() ? "?" : lanes));
  }
}

void Worker::onPeerError(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* a = static_cast<PeerErrorArg*>(arg);
  int none = 0;
  a->worker->lost_[static_cast<std::size_t>(a->peer)].compare_exchange_strong(
      none, static_cast<int>(status) < 0 ? static_cast<int>(status) : -1);
}

bool Worker::closeEndpoints() {
  if (!worker_) return true;
  // Flush mode: what this rank sent (the last step of the last collective, which a peer may
  // still be reading) reaches the peer before the connection goes; a forced close may reset
  // it first. After a failure, or for a lost peer, the close is forced. All within a bound.
  const bool force = troubled_.load();
  const std::int64_t limitNs = nowNs() + kCloseLimitNs;
  std::vector<void*> pending;
  for (std::size_t r = 0; r < endpoints_.size(); ++r) {
    ucp_ep_h& ep = endpoints_[r];
    if (!ep) continue;
    ucp_request_param_t cp{};
    if (force || lost_[r].load() != 0) {
      cp.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      cp.flags = UCP_EP_CLOSE_FLAG_FORCE;
    }
    void* req = ucp_ep_close_nbx(ep, &cp);
    if (UCS_PTR_IS_PTR(req)) pending.push_back(req);
    ep = nullptr;
  }
  bool closed = true;
  for (void* req : pending) {
    while (ucp_request_check_status(req) == UCS_INPROGRESS && nowNs() < limitNs) {
      if (ucp_worker_progress(worker_) == 0) sched_yield();
    }
    if (ucp_request_check_status(req) == UCS_INPROGRESS) {
      closed = false;
      continue;
    }
    ucp_request_free(req);
  }
  return closed;
}

namespace {

// An op from what a UCX post returned: done at once (nullptr), failed, or a request to wait.
void track(Op& op, ucs_status_ptr_t r) {
  if (r == nullptr) {
    op.done = true;
  } else if (UCS_PTR_IS_ERR(r)) {
    op.done = true;
    op.status = UCS_PTR_STATUS(r);
  } else {
    op.request = r;
  }
}

}  // namespace

Op Worker::send(int worldPeer, std::uint64_t tag, const void* buf, std::size_t bytes) {
  Op op;
  op.peer = worldPeer;
  ucp_request_param_t p{};
  track(op, ucp_tag_send_nbx(endpoints_[static_cast<std::size_t>(worldPeer)], buf, bytes, tag, &p));
  return op;
}

Op Worker::recv(int worldPeer, std::uint64_t tag, void* buf, std::size_t bytes) {
  Op op;
  op.peer = worldPeer;
  op.receive = true;
  op.expectedBytes = bytes;
  ucp_request_param_t p{};
  // Always a request, so the received length is read from it (ucp_tag_recv_request_test).
  p.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  track(op, ucp_tag_recv_nbx(worker_, buf, bytes, tag, kFullMask, &p));
  return op;
}

Worker::Idle::Idle(const Worker& worker, const WaitScope& scope)
    : worker_(worker),
      scope_(scope),
      startNs_(nowNs()),
      deadlineNs_(worker.timeoutMs_ > 0 ? startNs_ + worker.timeoutMs_ * 1'000'000 : 0),
      nextReportNs_(worker.reportMs_ > 0 ? startNs_ + worker.reportMs_ * 1'000'000 : 0) {}

void Worker::Idle::step(const char* what) {
  idle_ = ucp_worker_progress(worker_.worker_) != 0 ? 0 : idle_ + 1;
  // The checks run every 64 steps whether or not anything progressed: a worker shared with a
  // busy communicator (another thread's traffic) must not keep this wait from its deadline.
  if ((++steps_ & 63) == 0) {
    if (scope_.aborted && scope_.aborted->load(std::memory_order_acquire)) {
      worker_.troubled_.store(true);
      throwError(ErrorCode::kInvalidUsage, scope_.rank, scope_.op,
                 "the communicator was aborted; no call can run on it any more");
    }
    worker_.checkAbortNotice(scope_);
    const int lost = worker_.lostPeer(scope_.worldToLocal);
    if (lost >= 0) worker_.failLost(lost, UCS_ERR_CONNECTION_RESET, scope_);
    const std::int64_t now = nowNs();
    if (nextReportNs_ != 0 && now >= nextReportNs_) {
      // A wait this long is worth a line in the log (EPCOMM_WAIT_REPORT_S), until it ends.
      nextReportNs_ = now + worker_.reportMs_ * 1'000'000;
      worker_.log(3, waitReportText(scope_.rank, scope_.op, (now - startNs_) / 1e9, what,
                                    worker_.timeoutMs_, worker_.reportMs_));
    }
    if (deadlineNs_ != 0 && now > deadlineNs_) {
      worker_.troubled_.store(true);
      throwError(ErrorCode::kTimeout, scope_.rank, scope_.op,
                 fmt::format("timed out after {} ms (EPCOMM_TIMEOUT_MS) waiting for {}",
                             worker_.timeoutMs_, what));
    }
  }
  if (idle_ >= 64) sched_yield();
}

int Worker::lostPeer(const std::vector<int>* worldToLocal) const {
  for (int r = 0; r < size_; ++r) {
    if (lost_[static_cast<std::size_t>(r)].load(std::memory_order_acquire) == 0) continue;
    if (!worldToLocal || (*worldToLocal)[static_cast<std::size_t>(r)] >= 0) return r;
  }
  return -1;
}

void Worker::failLost(int worldPeer, ucs_status_t status, const WaitScope& scope) const {
  troubled_.store(true);
  // An operation of no single peer (a worker flush): the member UCX reported lost.
  if (worldPeer < 0) worldPeer = lostPeer(scope.worldToLocal);
  if (worldPeer < 0) {
    throwError(ErrorCode::kPeerLost, scope.rank, scope.op,
               fmt::format("a peer was lost ({})", ucs_status_string(status)));
  }
  // Members lost at about the same moment (a host that went down, or a rank that died and
  // the ranks that then stopped) are reported by UCX within moments: progress briefly so the
  // error names each of them, not only the first one seen.
  const std::int64_t until = nowNs() + kLossGraceNs;
  while (nowNs() < until) {
    if (ucp_worker_progress(worker_) == 0) sched_yield();
  }
  std::string names;
  int count = 0;
  for (int r = 0; r < size_; ++r) {
    const bool member =
        !scope.worldToLocal || (*scope.worldToLocal)[static_cast<std::size_t>(r)] >= 0;
    if (!member || (r != worldPeer && lost_[static_cast<std::size_t>(r)].load() == 0)) continue;
    names += (count++ ? ", " : "") + std::to_string(localName(scope.worldToLocal, r));
  }
  const int reported = lost_[static_cast<std::size_t>(worldPeer)].load();
  const ucs_status_t why = reported < 0 ? static_cast<ucs_status_t>(reported) : status;
  throwError(
      ErrorCode::kPeerLost, scope.rank, scope.op,
      fmt::format("peer rank{} {} {} lost ({}): {} died, or {} link dropped", count > 1 ? "s" : "",
                  names, count > 1 ? "were" : "was", ucs_status_string(why),
                  count > 1 ? "they" : "it", count > 1 ? "their" : "its"));
}

void Worker::waitAll(Op* ops, std::size_t n, const WaitScope& scope) const {
  const int rank = scope.rank;
  const char* op = scope.op;
  const std::vector<int>* worldToLocal = scope.worldToLocal;
  Idle idle(*this, scope);
  std::optional<WaitRecord::Scope> recording;  // once the wait lasts
  try {
    for (;;) {
      std::size_t pending = 0;
      for (std::size_t i = 0; i < n; ++i) {
        Op& o = ops[i];
        if (o.done) continue;
        const ucs_status_t st = o.receive ? ucp_tag_recv_request_test(o.request, &o.info)
                                          : ucp_request_check_status(o.request);
        if (st == UCS_INPROGRESS) {
          ++pending;
          continue;
        }
        o.status = st;
        o.done = true;
        ucp_request_free(o.request);
        o.request = nullptr;
      }
      for (std::size_t i = 0; i < n; ++i) {
        const Op& o = ops[i];
        if (!o.done) continue;
        if (o.status == UCS_ERR_MESSAGE_TRUNCATED) {
          throwError(scope.mismatchCode, rank, op,
                     fmt::format("rank {} sent more than the {} {} this rank expects; every "
                                 "rank must pass matching counts",
                                 localName(worldToLocal, o.peer), o.expectedBytes / o.elementSize,
                                 o.elementSize > 1 ? "elements" : "bytes"));
        }
        if (o.status != UCS_OK) {
          if (isPeerFailure(o.status)) failLost(o.peer, o.status, scope);
          failUcx(rank, op, o.receive ? "a UCX receive" : "a UCX send", o.status);
        }
        if (o.receive && o.info.length != o.expectedBytes) {
          throwError(scope.mismatchCode, rank, op,
                     fmt::format("rank {} sent {} {} where this rank expects {}; every rank "
                                 "must pass matching counts",
                                 localName(worldToLocal, o.peer), o.info.length / o.elementSize,
                                 o.elementSize > 1 ? "elements" : "bytes",
                                 o.expectedBytes / o.elementSize));
        }
      }
      if (pending == 0) return;
      if (scope.record && idle.checking()) {
        int peer = -1;
        for (std::size_t i = 0; i < n && peer < 0; ++i) {
          if (!ops[i].done && ops[i].peer >= 0) peer = localName(worldToLocal, ops[i].peer);
        }
        if (!recording) {
          recording.emplace(*scope.record, op, peer);
        } else {
          recording->setPeer(peer);
        }
      }
      std::string waitingFor;
      if (idle.nearDeadline()) {
        std::vector<int> peers;
        for (std::size_t i = 0; i < n; ++i) {
          if (!ops[i].done && ops[i].peer >= 0) {
            peers.push_back(localName(worldToLocal, ops[i].peer));
          }
        }
        std::sort(peers.begin(), peers.end());
        peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
        for (const int p : peers) {
          waitingFor += (waitingFor.empty() ? "rank " : ", rank ") + std::to_string(p);
        }
      }
      idle.step(waitingFor.empty() ? "its peers" : waitingFor.c_str());
    }
  } catch (...) {
    cancel(ops, n);
    throw;
  }
}

namespace {

// Abort notices: control messages with payload kAbortNotice under the communicator's context.
constexpr std::uint64_t kAbortNotice = 1;
constexpr std::size_t kReasonBytes = 512;
constexpr std::uint64_t kSourceMask = std::uint64_t{0xffff} << 30;

}  // namespace

void Worker::notifyAbort(std::uint16_t context, const std::vector<int>& members,
                         const char* reason) {
  std::string text = reason ? std::string(reason).substr(0, kReasonBytes) : std::string();
  const std::string* keptText = nullptr;
  {
    const std::lock_guard<std::mutex> lock(reasonsMutex_);
    reasons_.push_back(std::make_unique<std::string>(std::move(text)));
    keptText = reasons_.back().get();
  }
  const std::string& kept = *keptText;
  const std::uint64_t tag = makeTag(context, TagClass::kControl, rank_, kAbortNotice);
  std::vector<void*> pending;
  for (const int m : members) {
    if (m == rank_ || lost_[static_cast<std::size_t>(m)].load() != 0) continue;
    ucp_request_param_t p{};
    const ucs_status_ptr_t r = ucp_tag_send_nbx(endpoints_[static_cast<std::size_t>(m)],
                                                kept.data(), kept.size(), tag, &p);
    if (UCS_PTR_IS_PTR(r)) pending.push_back(r);
  }
  // Small messages leave at once; give the rest a moment, then let UCX finish them.
  const std::int64_t until = nowNs() + 100'000'000;
  for (void* r : pending) {
    while (ucp_request_check_status(r) == UCS_INPROGRESS && nowNs() < until) {
      if (ucp_worker_progress(worker_) == 0) sched_yield();
    }
    ucp_request_free(r);
  }
}

void Worker::checkAbortNotice(const WaitScope& scope) const {
  ucp_tag_recv_info_t info{};
  const std::uint64_t tag = makeTag(scope.context, TagClass::kControl, 0, kAbortNotice);
  ucp_tag_message_h message = ucp_tag_probe_nb(worker_, tag, ~kSourceMask, 1, &info);
  if (message == nullptr) return;
  const auto source = static_cast<int>((info.sender_tag & kSourceMask) >> 30);
  // Received into storage the worker keeps: a receive still running when this gives up
  // may complete later.
  std::string* buffer = nullptr;
  {
    const std::lock_guard<std::mutex> lock(reasonsMutex_);
    reasons_.push_back(
        std::make_unique<std::string>(std::min<std::size_t>(info.length, kReasonBytes), '\0'));
    buffer = reasons_.back().get();
  }
  std::string reason;
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  void* r = ucp_tag_msg_recv_nbx(worker_, buffer->data(), buffer->size(), message, &p);
  if (UCS_PTR_IS_PTR(r)) {
    const std::int64_t until = nowNs() + 100'000'000;
    while (ucp_request_check_status(r) == UCS_INPROGRESS && nowNs() < until) {
      ucp_worker_progress(worker_);
    }
    if (ucp_request_check_status(r) == UCS_OK) reason = *buffer;
    ucp_request_free(r);
  }
  troubled_.store(true);
  std::string text =
      fmt::format("communicator was aborted by rank {}", localName(scope.worldToLocal, source));
  if (!reason.empty()) text += EPCOMM_ABORT_REASON_MARK + reason;
  throwError(ErrorCode::kPeerLost, scope.rank, scope.op, text);
}

void Worker::cancel(Op* ops, std::size_t n) const {
  for (std::size_t i = 0; i < n; ++i) {
    if (!ops[i].done && ops[i].request) ucp_request_cancel(worker_, ops[i].request);
  }
  const std::int64_t until = nowNs() + 1'000'000'000;
  for (std::size_t i = 0; i < n; ++i) {
    Op& o = ops[i];
    if (o.done || !o.request) continue;
    while (ucp_request_check_status(o.request) == UCS_INPROGRESS && nowNs() < until) {
      ucp_worker_progress(worker_);
    }
    // Released now or, still running (a send to a lost peer), when UCX completes it.
    ucp_request_free(o.request);
    o.request = nullptr;
    o.done = true;
  }
}

void Worker::waitRequest(void* request, int peer, const WaitScope& scope) const {
  if (request == nullptr) return;
  if (UCS_PTR_IS_ERR(request)) {
    const ucs_status_t st = UCS_PTR_STATUS(request);
    if (isPeerFailure(st)) failLost(peer, st, scope);
    failUcx(scope.rank, scope.op, "a UCX RMA operation", st);
  }
  Op o;
  o.request = request;
  o.peer = peer;
  waitAll(&o, 1, scope);
}

}  // namespace epcomm::ucx
