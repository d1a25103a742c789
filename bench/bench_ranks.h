// What the programs do across ranks: every value, verdict and table row goes through the
// epcomm::Communicator, so they run wherever it does (mpirun, or ranks started by hand with
// EPCOMM_INIT_ADDR + EPCOMM_RANK + EPCOMM_SIZE, or any launcher). MPI serves --compare mpi
// only, and only where MPI_COMM_WORLD is the communicator's world.
#pragma once

#include <string>

#include "comm/communicator.h"

namespace epcomm::bench {

// Collective on `comm`; every rank gets the same result (reduced in rank order).
double maxOverRanks(Communicator& comm, double value);
double meanOverRanks(Communicator& comm, double value);
long long sumOverRanks(Communicator& comm, long long value);
bool trueOnEveryRank(Communicator& comm, bool value);

// --compare mpi. Collective on `comm`: initialises MPI (MPI_THREAD_SERIALIZED) unless it is
// up, on every rank, when every rank was launched by mpirun (or a PMI launcher) as the same
// rank of the same world size as in `comm`, or MPI is up with MPI_COMM_WORLD equal to comm's
// world. Returns "" then, else the message every rank reports (MPI left untouched).
std::string openMpiWorld(Communicator& comm);
// Finalises MPI where openMpiWorld initialised it; after every use of MPI (a backend that
// initialised MPI itself finalises it at exit).
void closeMpiWorld();
// After a failure on this rank: aborts `comm` (null: none yet) and, where MPI is up, the
// MPI job, so no rank is left waiting. Returns where MPI is not up.
void abortRanks(Communicator* comm);

}  // namespace epcomm::bench
