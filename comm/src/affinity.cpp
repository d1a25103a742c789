#include "comm/src/affinity.h"

#include <array>
#include <cstdint>
#include <vector>

#include "comm/src/host_identity.h"
#include "comm/src/topology_bridge.h"
#include "topology/topology.h"

namespace epcomm {

// EPCOMM_CPU_AFFINITY: the ranks of a host that were given the same cpus (launcher, taskset,
// the engine, or the whole machine) divide them; a rank never leaves the cpus it was given.
std::unique_ptr<Communicator> bindIfAsked(std::unique_ptr<Communicator> comm) {
  if (!comm->config().cpuAffinity) return comm;
  constexpr std::size_t kMaxCpus = 4096;
  struct Record {
    HostIdentity host;
    std::array<std::uint64_t, kMaxCpus / 64> cpus;
  };
  Record mine{thisHost(), {}};
  const std::vector<int> cpus = topology::processCpus();
  for (int cpu : cpus) {
    if (cpu >= 0 && static_cast<std::size_t>(cpu) < kMaxCpus)
      mine.cpus[cpu / 64] |= 1ull << (cpu % 64);
  }
  std::vector<Record> all(static_cast<std::size_t>(comm->size()));
  comm->allGather(&mine, all.data(), sizeof(Record), DataType::kU8);
  topology::BindingGroup group;
  group.cpus = cpus;
  group.size = 0;
  for (int r = 0; r < comm->size(); ++r) {
    const Record& other = all[static_cast<std::size_t>(r)];
    if (other.host != mine.host || other.cpus != mine.cpus) continue;
    if (r < comm->rank()) ++group.index;
    ++group.size;
  }
  bindLocalRank(comm->config(), comm->rank(), group);
  return comm;
}

}  // namespace epcomm
