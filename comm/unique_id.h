// The NCCL-style rendezvous token: made by one rank (usually 0) with UniqueId::create(),
// passed to the others out of band, then given to Communicator::init. Opaque and fixed size
// (128 bytes, as ncclUniqueId); holds the rendezvous address and a random secret.
#pragma once

#include <array>
#include <cstddef>

#include "export.h"

namespace epcomm {

struct EPCOMM_API UniqueId {
  static constexpr std::size_t kBytes = 128;
  std::array<unsigned char, kBytes> bytes{};

  // Starts a rendezvous server in this process that lives until the communicator built
  // from the id is up or EPCOMM_CONNECT_TIMEOUT passes, and returns its id. The server
  // listens on an ephemeral port of the address of the interface EPCOMM_IF_IP /
  // EPCOMM_SOCKET_IFNAME select (never 0.0.0.0); the id carries that address. Throws
  // epcomm::Error (a selection that matches nothing names the setting).
  static UniqueId create();
};

}  // namespace epcomm
