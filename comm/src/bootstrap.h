// Out-of-band exchange used while a communicator is being created: an all-gather among the
// ranks of the new communicator, before any backend is up. Implementations: the TCP
// rendezvous (UniqueId / EPCOMM_INIT_ADDR), the caller's OobAllGather, or an existing
// backend (under mpirun).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "comm/config.h"
#include "comm/unique_id.h"

namespace epcomm {

class Bootstrap {
 public:
  virtual ~Bootstrap() = default;
  // Every rank contributes `bytes` bytes; recv gets size * bytes in rank order. All ranks
  // pass the same `bytes`. Throws epcomm::Error (kTimeout, kPeerLost, kInvalidArgument).
  virtual void allGather(const void* send, void* recv, std::size_t bytes) = 0;
};

// Largest all-gather contribution the rendezvous carries per rank.
inline constexpr std::size_t kMaxBootstrapBytes = 1u << 20;
// Secret bytes held by a UniqueId and presented by every rank.
inline constexpr std::size_t kSecretBytes = 32;

// The decoded content of a UniqueId.
struct RendezvousInfo {
  std::string host;  // numeric IPv4 or IPv6 address
  std::uint16_t port = 0;
  unsigned char secret[kSecretBytes] = {};
};

UniqueId encodeUniqueId(const RendezvousInfo& info);
// Throws kInvalidArgument when the bytes are not a UniqueId of this version.
RendezvousInfo decodeUniqueId(const UniqueId& id, int rank);

// Starts a rendezvous server in this process, bound to info.host:info.port (port 0: an
// ephemeral port), and returns the address it listens on. The server lives in a background
// thread until every rank of the group it serves has left, or until the connect timeout
// passes; it refuses a connection that presents a wrong secret, garbage, or an oversized
// message without disturbing the others.
RendezvousInfo startRendezvousServer(const RendezvousInfo& info, std::int64_t connectTimeoutS);

// Connects to a rendezvous as `rank` of `size`, retrying until EPCOMM_CONNECT_TIMEOUT. On a
// timeout the error names the ranks that never arrived.
std::unique_ptr<Bootstrap> connectRendezvous(const RendezvousInfo& info, int rank, int size,
                                             std::int64_t connectTimeoutS);

// The numeric address (IPv4 preferred) of a host name or address; throws
// kInvalidArgument naming the host when it cannot be resolved.
std::string resolveHost(const std::string& host, int rank);

// The address a UniqueId's rendezvous listens on and advertises: that of the interface
// topology/ selects for `config` (EPCOMM_IF_IP, EPCOMM_SOCKET_IFNAME, else the default
// order), never 0.0.0.0. Throws epcomm::Error (kInvalidArgument) naming the setting and
// listing the interfaces when it matches nothing.
std::string rendezvousHost(const Config& config);

}  // namespace epcomm
