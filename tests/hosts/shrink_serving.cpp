// A lost rank across hosts need not end the service: the ranks run checked EP rounds (normal
// and low-latency, tests/ep/shrink_rounds.h) until the victim (EPCOMM_TEST_VICTIM, killed by
// tests/hosts/run_on_hosts.sh --kill) is lost, then shrink (Communicator::shrink), rebuild the
// Buffer with its experts masked and run 100 more checked rounds. A survivor prints
// "shrink_serving: rank R: ok" and exits 0 when all of that held, 1 otherwise; every loop is
// bounded in time.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/communicator.h"
#include "ep/buffer.h"
#include "tests/ep/shrink_rounds.h"

namespace {

using Clock = std::chrono::steady_clock;
using epcomm::test::MaskedLayout;

int fail(int rank, const std::string& why) {
  std::fprintf(stderr, "shrink_serving: rank %d: FAILED: %s\n", rank, why.c_str());
  return 1;
}

}  // namespace

int main() {
  const char* victimVar = std::getenv("EPCOMM_TEST_VICTIM");
  if (!victimVar) return fail(-1, "EPCOMM_TEST_VICTIM is not set");
  std::unique_ptr<epcomm::Communicator> comm = epcomm::Communicator::initFromEnvironment();
  const int rank = comm->rank();
  const MaskedLayout layout{comm->size(), std::atoi(victimVar)};
  std::vector<int> all(static_cast<std::size_t>(comm->size()));
  for (int r = 0; r < comm->size(); ++r) all[static_cast<std::size_t>(r)] = r;
  const Clock::time_point start = Clock::now();
  try {
    epcomm::ep::Buffer buffer(*comm, epcomm::test::shrinkBufferConfig());
    for (int round = 0;; ++round) {
      if (!epcomm::test::normalRound(buffer, layout, all, round) ||
          !epcomm::test::lowLatencyRound(buffer, layout, all, round)) {
        return fail(rank, "a round before the loss was wrong");
      }
      if (Clock::now() - start > std::chrono::seconds(120)) {
        return fail(rank, "no loss after 120 s");
      }
    }
  } catch (const epcomm::Error& e) {
    std::fprintf(stderr, "shrink_serving: rank %d: lost a peer: %s\n", rank, e.what());
    if (e.code() != epcomm::ErrorCode::kPeerLost && e.code() != epcomm::ErrorCode::kTimeout) {
      return fail(rank, "the failure was not a lost peer");
    }
  }
  std::vector<int> kept;
  std::unique_ptr<epcomm::Communicator> shrunk;
  try {
    shrunk = comm->shrink(&kept);
  } catch (const epcomm::Error& e) {
    return fail(rank, std::string("shrink: ") + e.what());
  }
  std::vector<int> expected;
  for (int r = 0; r < comm->size(); ++r) {
    if (r != layout.victim) expected.push_back(r);
  }
  if (kept != expected) return fail(rank, "shrink kept other ranks than every survivor");
  try {
    epcomm::ep::BufferConfig bc = epcomm::test::shrinkBufferConfig();
    bc.mask.originalRanks = layout.originalRanks;
    bc.mask.keptRanks = kept;
    epcomm::ep::Buffer buffer(*shrunk, bc);
    for (int round = 0; round < 100; ++round) {
      if (!epcomm::test::normalRound(buffer, layout, kept, round) ||
          !epcomm::test::lowLatencyRound(buffer, layout, kept, round)) {
        return fail(rank, "a round after the shrink was wrong");
      }
    }
  } catch (const epcomm::Error& e) {
    return fail(rank, std::string("after the shrink: ") + e.what());
  }
  std::fprintf(stderr, "shrink_serving: rank %d: ok (now rank %d of %d on backend %s)\n", rank,
               shrunk->rank(), shrunk->size(), shrunk->backendName().c_str());
  // A serving survivor does not vanish at once (the others may still be in their last round).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  return 0;
}
