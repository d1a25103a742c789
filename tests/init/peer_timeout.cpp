// A peer that never joins a collective must not hang the others (EPCOMM_TIMEOUT_MS). Run
// under mpirun -np 2 with EPCOMM_CHECK_ARGS=0 and a short EPCOMM_TIMEOUT_MS: rank 0's
// allReduce fails its own argument check and rank 0 stays away; rank 1, inside the
// collective, must report a timeout naming itself and the call within the deadline (the
// mpi backend then ends the job). ctest matches that report; exiting any other way fails.
#include <chrono>
#include <cstdio>
#include <thread>

#include "comm/communicator.h"

int main() {
  auto comm = epcomm::Communicator::initFromEnvironment();
  float data[16] = {};
  if (comm->rank() == 0) {
    try {
      comm->allReduce(nullptr, data, 16, epcomm::DataType::kF32, epcomm::ReduceOp::kSum);
      std::fprintf(stderr, "peer_timeout: the null buffer was accepted\n");
      return 2;
    } catch (const epcomm::Error& e) {
      std::fprintf(stderr, "peer_timeout: expected local error: %s\n", e.what());
    }
    // Stay away from the collective; the peer's watchdog must end the job first.
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::fprintf(stderr, "peer_timeout: rank 1 did not time out\n");
    return 3;
  }
  comm->allReduce(data, data, 16, epcomm::DataType::kF32, epcomm::ReduceOp::kSum);
  std::fprintf(stderr, "peer_timeout: rank 1's allReduce returned without its peer\n");
  return 4;
}
