#include "bench/bench_ranks.h"

#include <mpi.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <numeric>
#include <optional>
#include <vector>

#include "comm/config.h"

namespace epcomm::bench {
namespace {

bool mpiInitialisedHere = false;

// Every rank's value in rank order (epcomm has no f64: the bits travel as i64).
std::vector<double> everyRank(Communicator& comm, double value) {
  const auto bits = std::bit_cast<std::int64_t>(value);
  std::vector<std::int64_t> all(static_cast<std::size_t>(comm.size()));
  comm.allGather(&bits, all.data(), 1, DataType::kI64);
  std::vector<double> values(all.size());
  std::transform(all.begin(), all.end(), values.begin(),
                 [](std::int64_t b) { return std::bit_cast<double>(b); });
  return values;
}

int environmentInt(const char* name) {
  const std::optional<std::string> text = environmentValue(name);
  const std::optional<std::int64_t> v = text ? parseInteger(*text) : std::nullopt;
  return v && *v >= 0 && *v <= INT32_MAX ? static_cast<int>(*v) : -1;
}

struct WorldPlace {
  int rank = -1;
  int size = -1;
};

// Where the launcher put this process, read as the library reads it (Open MPI's
// OMPI_COMM_WORLD_RANK/SIZE, else PMI_RANK/SIZE); {-1, -1} without one.
WorldPlace launcherPlace() {
  WorldPlace p{environmentInt("OMPI_COMM_WORLD_RANK"), environmentInt("OMPI_COMM_WORLD_SIZE")};
  if (p.rank < 0 || p.size <= 0) p = {environmentInt("PMI_RANK"), environmentInt("PMI_SIZE")};
  return p.rank >= 0 && p.rank < p.size ? p : WorldPlace{};
}

bool mpiUp() {
  int initialised = 0, finalized = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalized);
  return initialised && !finalized;
}

}  // namespace

double maxOverRanks(Communicator& comm, double value) {
  const std::vector<double> all = everyRank(comm, value);
  return *std::max_element(all.begin(), all.end());
}

double meanOverRanks(Communicator& comm, double value) {
  const std::vector<double> all = everyRank(comm, value);
  return std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size());
}

long long sumOverRanks(Communicator& comm, long long value) {
  std::int64_t v = value;
  comm.allReduce(&v, &v, 1, DataType::kI64, ReduceOp::kSum);
  return v;
}

bool trueOnEveryRank(Communicator& comm, bool value) {
  std::int32_t v = value ? 1 : 0;
  comm.allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kMin);
  return v == 1;
}

std::string openMpiWorld(Communicator& comm) {
  const bool up = mpiUp();
  WorldPlace world;
  if (up) {
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
  } else {
    world = launcherPlace();
  }
  // Agreed before MPI_Init: under mpirun, MPI_Init waits for every process of the job.
  if (!trueOnEveryRank(comm, world.rank == comm.rank() && world.size == comm.size())) {
    return "--compare mpi needs the ranks launched by mpirun (MPI_COMM_WORLD must be epcomm's "
           "world)";
  }
  if (!up) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    mpiInitialisedHere = true;
  }
  return {};
}

void closeMpiWorld() {
  if (mpiInitialisedHere && mpiUp()) MPI_Finalize();
  mpiInitialisedHere = false;
}

void abortRanks(Communicator* comm) {
  if (comm) comm->abort();
  if (mpiUp()) MPI_Abort(MPI_COMM_WORLD, 1);
}

}  // namespace epcomm::bench
