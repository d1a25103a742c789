// Where comm/ meets topology/ (a leaf that knows nothing of comm): requests built from
// comm's knobs, decisions logged with the rank, topology::Error turned into epcomm::Error.
#pragma once

#include "comm/config.h"
#include "comm/error.h"
#include "topology/cpu_affinity.h"
#include "topology/error.h"
#include "topology/interface_selection.h"

namespace epcomm {

// The interface selection EPCOMM_SOCKET_IFNAME / EPCOMM_IF_IP (or their aliases) ask for,
// naming the variable that supplied each.
// Exported for epcomm-topo and the tests (this header is not installed).
EPCOMM_API topology::SelectionRequest selectionRequest(const Config& config);

// Runs fn; a topology::Error becomes an epcomm::Error of the same kind naming `rank`.
template <typename Fn>
auto translateTopologyErrors(int rank, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const topology::Error& e) {
    throwError(e.kind() == topology::ErrorKind::kInvalidArgument ? ErrorCode::kInvalidArgument
                                                                 : ErrorCode::kSystemError,
               rank, e.operation(), e.detail());
  }
}

// listInterfaces + selectInterface for `config`; logs the decision at info level.
topology::InterfaceSelection selectInterface(const Config& config, int rank);

// topology::bindLocalRank for `config`; logs "rank R bound to cpus ..." at info level.
topology::RankBinding bindLocalRank(const Config& config, int rank,
                                    const topology::BindingGroup& group);

}  // namespace epcomm
