// The ways to make a communicator, run as real processes under mpirun: UniqueId made on rank
// 0 and passed out of band (here through MPI), the caller's all-gather (UCC style), and
// EPCOMM_INIT_ADDR + rank + size (torch style). Each one then runs collectives.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cstdlib>

#include <memory>
#include <string>

#include "comm/communicator.h"

namespace epcomm {
namespace {

int worldRank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int worldSize() {
  int s = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

void expectWorks(Communicator& comm, int rank, int size) {
  EXPECT_EQ(comm.rank(), rank);
  EXPECT_EQ(comm.size(), size);
  std::int64_t v = rank + 1;
  comm.allReduce(&v, &v, 1, DataType::kI64, ReduceOp::kSum);
  EXPECT_EQ(v, static_cast<std::int64_t>(size) * (size + 1) / 2);
  std::vector<int> all(size);
  comm.allGather(&rank, all.data(), 1, DataType::kI32);
  for (int r = 0; r < size; ++r) EXPECT_EQ(all[r], r);
}

TEST(Init, FromUniqueId) {
  UniqueId id;
  if (worldRank() == 0) id = UniqueId::create();
  MPI_Bcast(id.bytes.data(), UniqueId::kBytes, MPI_BYTE, 0, MPI_COMM_WORLD);
  auto comm = Communicator::init(id, worldRank(), worldSize());
  expectWorks(*comm, worldRank(), worldSize());
}

TEST(Init, FromUniqueIdWithRanksReversed) {
  // epcomm ranks need not equal the launcher's.
  UniqueId id;
  if (worldRank() == 0) id = UniqueId::create();
  MPI_Bcast(id.bytes.data(), UniqueId::kBytes, MPI_BYTE, 0, MPI_COMM_WORLD);
  const int rank = worldSize() - 1 - worldRank();
  auto comm = Communicator::init(id, rank, worldSize());
  expectWorks(*comm, rank, worldSize());
}

TEST(Init, ThroughTheCallersAllGather) {
  OobAllGather allGather = [](const void* send, void* recv, std::size_t bytes) {
    MPI_Allgather(send, static_cast<int>(bytes), MPI_BYTE, recv, static_cast<int>(bytes), MPI_BYTE,
                  MPI_COMM_WORLD);
  };
  auto comm = Communicator::init(allGather, worldRank(), worldSize());
  expectWorks(*comm, worldRank(), worldSize());
}

TEST(Init, FromEnvironmentAddress) {
  // Rank 0 picks a free loopback port and shares it; then every rank inits torch style.
  int port = 0;
  if (worldRank() == 0) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    close(fd);
  }
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  setenv("EPCOMM_INIT_ADDR", ("localhost:" + std::to_string(port)).c_str(), 1);  // a name, resolved
  setenv("EPCOMM_RANK", std::to_string(worldRank()).c_str(), 1);
  setenv("EPCOMM_SIZE", std::to_string(worldSize()).c_str(), 1);
  setenv("EPCOMM_INIT_SECRET", "not-so-secret", 1);
  const Config config = Config::fromEnvironment();
  unsetenv("EPCOMM_INIT_ADDR");
  unsetenv("EPCOMM_RANK");
  unsetenv("EPCOMM_SIZE");
  unsetenv("EPCOMM_INIT_SECRET");
  auto comm = Communicator::initFromEnvironment(config);
  expectWorks(*comm, worldRank(), worldSize());
}

// EPCOMM_BACKEND=auto: shm when every rank is on one host (the ranks' hostname and IPC
// namespace agree), else ucx (preferred to mpi under mpirun). EPCOMM_TEST_EXPECT_BACKEND says which
// this run must get (ctest runs one rank in its own IPC namespace: a second "host").
TEST(Init, UnderMpirunAutomatically) {
  const char* expected = std::getenv("EPCOMM_TEST_EXPECT_BACKEND");
  auto comm = Communicator::initFromEnvironment();
  EXPECT_EQ(comm->backendName(), expected ? expected : "shm");
  if (!expected) {
    EXPECT_EQ(comm->localSize(), comm->size());
  }
  expectWorks(*comm, worldRank(), worldSize());
}

TEST(Init, BadArgumentsAreErrors) {
  try {
    Communicator::init(UniqueId{}, 0, 2);
    ADD_FAILURE() << "a zero UniqueId was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
  }
  try {
    Communicator::init(UniqueId{}, 5, 2);
    ADD_FAILURE() << "rank 5 of 2 was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace epcomm

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  MPI_Allreduce(MPI_IN_PLACE, &rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return rc;
}
