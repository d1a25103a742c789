#include "backends/mpi/window.h"

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <thread>

#include "comm/error.h"

namespace epcomm::mpi {
namespace {

constexpr const char* kKnob = "EPCOMM_MPI_WINDOW";

// Backoff: spin first (a signal usually comes soon), then yield the core, then sleep in
// growing steps up to kMaxSleepUs, so that many ranks on few cores still progress.
constexpr unsigned kSpinPolls = 128;
constexpr unsigned kYieldPolls = kSpinPolls + 256;
constexpr std::int64_t kMaxSleepUs = 100;

void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

WindowTransport chooseWindowTransport(const WindowContext& ctx) {
  constexpr const char* kOp = "createWindow";
  // The knob is an agreed row (every rank has the same value, checked at init) and a node
  // that holds every rank holds them on every rank: each rank decides alike, no message.
  const std::string& value = ctx.transportKnob;
  MPI_Comm node = MPI_COMM_NULL;
  checkMpi(MPI_Comm_split_type(ctx.comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), ctx.rank,
           kOp);
  int nodeSize = 0;
  MPI_Comm_size(node, &nodeSize);
  MPI_Comm_free(&node);
  const bool oneNode = nodeSize == ctx.size;
  if (value == "shared" && !oneNode) {
    throwError(ErrorCode::kInvalidArgument, ctx.rank, kOp,
               std::string(kKnob) +
                   "=shared needs every rank on one node, but this communicator spans nodes; "
                   "unset it or use " +
                   kKnob + "=messages");
  }
  if (value == "messages") return WindowTransport::kMessages;
  return oneNode ? WindowTransport::kShared : WindowTransport::kMessages;
}

Poller::Poller(const WindowContext& ctx, const char* op)
    : ctx_(ctx),
      op_(op),
      deadlineNs_(ctx.timeoutMs > 0 ? steadyNowNs() + ctx.timeoutMs * 1000000
                                    : std::numeric_limits<std::int64_t>::max()) {}

bool Poller::backOff() {
  if (ctx_.aborted->load(std::memory_order_relaxed)) {
    throwError(ErrorCode::kInvalidUsage, ctx_.rank, op_, "mpi backend was aborted");
  }
  const unsigned n = polls_++;
  if (n < kSpinPolls) {
    cpuRelax();
    return true;
  }
  if (steadyNowNs() >= deadlineNs_) return false;
  if (n < kYieldPolls) {
    sched_yield();
    return true;
  }
  const std::int64_t us = std::min<std::int64_t>(kMaxSleepUs, 1 + (n - kYieldPolls) / 16);
  std::this_thread::sleep_for(std::chrono::microseconds(us));
  return true;
}

void Poller::timeout(const std::string& what) const {
  throwError(ErrorCode::kTimeout, ctx_.rank, op_,
             fmt::format("timeout: {} after EPCOMM_TIMEOUT_MS={} ms (no peer signalled, a peer "
                         "died, or it never made the matching call); raise EPCOMM_TIMEOUT_MS if "
                         "the peer is only slow",
                         what, ctx_.timeoutMs));
}

}  // namespace epcomm::mpi
