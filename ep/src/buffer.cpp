#include "ep/buffer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <string_view>

#include "comm/agreement.h"
#include "comm/log.h"
#include "ep/src/buffer_state.h"
#include "ep/src/low_latency_state.h"

namespace epcomm::ep {
namespace {

const char* transportName(Transport t) {
  return t == Transport::kWindow ? "window" : t == Transport::kCollective ? "collective" : "auto";
}

}  // namespace

BufferState::BufferState(Communicator& c, const BufferConfig& cfg)
    : comm(c), config(cfg), normal(cfg.normalBytes, c.rank(), "normal-mode staging") {}

BufferState::~BufferState() = default;

Buffer::Buffer(Communicator& comm, const BufferConfig& config) {
  CallAgreement agreement("ep::Buffer");
  if (config.rounds < 0) agreement.fail("BufferConfig::rounds must be >= 0 (0: no limit)");
  if (config.roundTokens < 0) agreement.fail("BufferConfig::roundTokens must be >= 0");
  if (config.llMaxTokens < 1) agreement.fail("BufferConfig::llMaxTokens must be >= 1");
  if (config.quantGroup != 0 && config.quantGroup != kQuantGroup) {
    agreement.fail("BufferConfig::quantGroup must be 128 or 0 (per token)");
  }
  if (config.normalBytes == 0) agreement.fail("BufferConfig::normalBytes must be > 0");
  // The transport, decided once: windows where the backend has them (auto: and every rank
  // is on this host, where windows are shared memory), else collectives.
  const bool windows = comm.hasWindows();
  Transport resolved = Transport::kCollective;
  if (config.transport == Transport::kWindow) {
    if (!windows) {
      agreement.fail(
          fmt::format("EPCOMM_EP_TRANSPORT=window (BufferConfig::transport) but backend {} has no "
                      "symmetric windows; use auto or collective, or a backend with windows "
                      "(EPCOMM_BACKEND=mpi or shm)",
                      comm.backendName()));
    }
    // Two levels across hosts (backend "inHost+network"): the windows are the network
    // backend's, whose puts over TCP complete only while their target progresses it, and a
    // rank waiting inside its host (a receive hook's caller in the next call's first step)
    // does not: the window transport could stall there until the timeout.
    const bool twoLevels = comm.numHosts() > 1 && comm.numHosts() < comm.size() &&
                           comm.backendName().find('+') != std::string::npos;
    if (windows && twoLevels) {
      agreement.fail(fmt::format(
          "EPCOMM_EP_TRANSPORT=window is not available across hosts on backend {} (its network "
          "windows can stall while a rank waits inside its host); use auto or collective, or "
          "EPCOMM_BACKEND=ucx",
          comm.backendName()));
    }
    resolved = Transport::kWindow;
  } else if (config.transport == Transport::kAuto && windows && comm.localSize() == comm.size()) {
    resolved = Transport::kWindow;
  } else if (config.transport != Transport::kAuto && config.transport != Transport::kCollective) {
    agreement.fail("BufferConfig::transport must be kAuto, kWindow or kCollective");
  }
  agreement.same("transport (EPCOMM_EP_TRANSPORT)", static_cast<int>(config.transport));
  // (The resolved transport follows from it: windows and hosts are the same on every rank.)
  agreement.same("llMaxTokens (EPCOMM_EP_LL_MAX_TOKENS)", config.llMaxTokens);
  agreement.same("rounds (EPCOMM_EP_ROUNDS)", config.rounds);
  agreement.same("roundTokens (EPCOMM_EP_ROUND_TOKENS)", config.roundTokens);
  agreement.same("combineRounds (EPCOMM_EP_COMBINE_ROUNDS)", config.combineRounds);
  agreement.same("normalBytes (EPCOMM_EP_BUFFSIZE)", static_cast<std::int64_t>(config.normalBytes));
  agreement.same("hostRelay (EPCOMM_EP_HOST_RELAY)", config.hostRelay ? 1 : 0);
  const std::optional<std::string> maskProblemText = maskProblem(config.mask, comm.size());
  if (maskProblemText) agreement.fail(*maskProblemText);
  agreement.same("mask (originalRanks, keptRanks)",
                 CallAgreement::callIdOf(fmt::format("{}:{}", config.mask.originalRanks,
                                                     fmt::join(config.mask.keptRanks, ","))));
  comm.agree(agreement);
  state_ = std::make_unique<BufferState>(comm, config);
  if (config.hostRelay) state_->relay = HostRelay::create(comm);
  state_->mask = ExpertMap(config.mask, comm.size());
  state_->llTransport =
      resolved == Transport::kWindow ? LlTransportKind::kWindow : LlTransportKind::kCollective;
  if (comm.rank() == 0) {
    log().info(
        "ep::Buffer: {} transport (EPCOMM_EP_TRANSPORT={}, backend {} {} windows, {} of {} "
        "ranks on this host){}",
        transportName(resolved), transportName(config.transport), comm.backendName(),
        windows ? "has" : "has no", comm.localSize(), comm.size(),
        state_->relay ? "; normal mode relays through each host (EPCOMM_EP_HOST_RELAY)" : "");
  }
}

Buffer::~Buffer() = default;

const BufferConfig& Buffer::config() const {
  return state_->config;
}
Communicator& Buffer::communicator() const {
  return state_->comm;
}
int Buffer::rank() const {
  return state_->comm.rank();
}
int Buffer::numRanks() const {
  return state_->comm.size();
}

Transport Buffer::transport() const {
  return state_->llTransport == LlTransportKind::kWindow ? Transport::kWindow
                                                         : Transport::kCollective;
}

std::size_t Buffer::footprintBytes() const {
  return state_->normal.bytes() + state_->normalWindow.footprintBytes() +
         (state_->lowLatency ? state_->lowLatency->footprintBytes() : 0);
}

}  // namespace epcomm::ep
