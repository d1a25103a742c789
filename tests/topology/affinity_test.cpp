// EPCOMM_CPU_AFFINITY under mpirun: every rank of the host is bound to a non-empty set of
// cpus, disjoint from the others' (masks exchanged through the communicator) while there
// are enough PUs and never outside the cpus it was given (the ranks given the same cpus
// divide them), its memory policy is bound, and it logged "rank R bound to cpus". With
// EPCOMM_TEST_EXPECT_BINDING=keep the launcher's binding must be left as it was.
#include <gtest/gtest.h>
#include <hwloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace epcomm {
namespace {

constexpr std::size_t kMaskBytes = sizeof(cpu_set_t);

cpu_set_t currentMask() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  return set;
}

// Runs fn with this process's stderr going to a file; returns what was written there (and
// echoes it to the real stderr).
template <class Fn>
std::string captureStderr(Fn&& fn) {
  char path[] = "/tmp/epcomm-affinity-XXXXXX";
  const int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  fflush(stderr);
  const int saved = dup(2);
  dup2(fd, 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  unlink(path);
  fputs(text.str().c_str(), stderr);
  return text.str();
}

TEST(Affinity, LocalRanksGetDisjointCpus) {
  const char* expect = std::getenv("EPCOMM_TEST_EXPECT_BINDING");
  const bool keep = expect != nullptr && std::string(expect) == "keep";
  const cpu_set_t before = currentMask();
  std::unique_ptr<Communicator> comm;
  const std::string log = captureStderr([&] { comm = Communicator::initFromEnvironment(); });
  ASSERT_TRUE(comm);
  const int rank = comm->rank();
  const cpu_set_t after = currentMask();
  if (keep) {
    EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "rank " << rank << ": the binding changed";
    EXPECT_EQ(log.find("bound to cpus"), std::string::npos) << log;
    return;
  }
  EXPECT_GT(CPU_COUNT(&after), 0);
  // Never moved out of the cpus it was given (taskset, the launcher, the engine).
  cpu_set_t outside;
  CPU_XOR(&outside, &after, &before);
  CPU_AND(&outside, &outside, &after);
  EXPECT_EQ(CPU_COUNT(&outside), 0) << "rank " << rank << " was moved out of its cpus";
  EXPECT_NE(log.find("rank " + std::to_string(rank) + " bound to cpus "), std::string::npos)
      << "no binding line in: " << log;

  // Every rank's mask, through the communicator.
  std::vector<unsigned char> all(kMaskBytes * static_cast<std::size_t>(comm->size()));
  comm->allGather(&after, all.data(), kMaskBytes, DataType::kU8);
  std::vector<cpu_set_t> masks(static_cast<std::size_t>(comm->size()));
  for (int r = 0; r < comm->size(); ++r) {
    std::memcpy(&masks[static_cast<std::size_t>(r)], all.data() + r * kMaskBytes, kMaskBytes);
  }
  // Disjoint while the host has a PU per local rank (it must, under --bind-to none, have had
  // them all before init).
  const bool enough = CPU_COUNT(&before) >= comm->localSize();
  for (int r = 0; r < comm->size(); ++r) {
    if (r == rank) continue;
    cpu_set_t both;
    CPU_AND(&both, &after, &masks[static_cast<std::size_t>(r)]);
    if (enough) {
      EXPECT_EQ(CPU_COUNT(&both), 0) << "ranks " << rank << " and " << r << " share cpus";
    }
  }
  // The memory policy of this thread is bound.
  hwloc_topology_t topology;
  ASSERT_EQ(hwloc_topology_init(&topology), 0);
  ASSERT_EQ(hwloc_topology_load(topology), 0);
  hwloc_bitmap_t nodes = hwloc_bitmap_alloc();
  hwloc_membind_policy_t policy = HWLOC_MEMBIND_DEFAULT;
  if (hwloc_get_membind(topology, nodes, &policy, HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) ==
      0) {
    EXPECT_EQ(policy, HWLOC_MEMBIND_BIND);
    EXPECT_FALSE(hwloc_bitmap_iszero(nodes));
  }
  hwloc_bitmap_free(nodes);
  hwloc_topology_destroy(topology);
  comm->barrier();
}

}  // namespace
}  // namespace epcomm
