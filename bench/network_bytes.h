// Bytes that crossed the host boundary, as the hosts' network interfaces count them: the sum
// of tx_bytes over every interface in /sys/class/net but loopback (headers included; other
// traffic on those interfaces in the same seconds counts too, and RDMA traffic that bypasses
// the kernel's counters does not). On the namespace hosts of tests/hosts/run_on_hosts.sh
// each host's one veth interface carries exactly the traffic between the hosts.
#pragma once

#include <cstdint>

#include "comm/communicator.h"

namespace epcomm::bench {

// This host's interfaces' sent bytes so far (0 where /sys/class/net cannot be read).
std::uint64_t hostSentBytes();

// Collective: the bytes every host sent between `before` and `after` (this rank's readings
// of hostSentBytes), summed over the hosts (local rank 0 of each host counts its host) and
// divided by `calls`.
double networkBytesPerCall(Communicator& comm, std::uint64_t before, std::uint64_t after,
                           int calls);

}  // namespace epcomm::bench
