// Communicator::initFromEnvironment without mpirun: a torch-style environment (torchrun and
// the engines set MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) that names several ranks but no
// init path is an error naming what is missing, never a silent world of one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "comm/communicator.h"
#include "comm/epcomm.h"
#include "tests/common/env_guard.h"

namespace epcomm::test {
namespace {

bool underLauncher() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE");
}

TEST(InitEnvironment, TorchStyleWorldWithoutInitPathFails) {
  if (underLauncher()) GTEST_SKIP() << "runs outside mpirun only";
  for (const auto& [name, value] : {std::pair{"WORLD_SIZE", "2"}, std::pair{"EPCOMM_SIZE", "4"},
                                    std::pair{"SLURM_NTASKS", "3"}}) {
    EnvGuard env;
    env.set("MASTER_ADDR", "127.0.0.1");
    env.set("MASTER_PORT", "29500");
    env.set("RANK", "1");
    env.set(name, value);
    try {
      auto comm = Communicator::initFromEnvironment(Config::fromEnvironment());
      ADD_FAILURE() << name << "=" << value << ": a communicator of " << comm->size() << " rank(s)";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(e.code(), ErrorCode::kInvalidUsage) << what;
      EXPECT_NE(what.find("EPCOMM_INIT_ADDR"), std::string::npos) << what;
      EXPECT_NE(what.find("all-gather"), std::string::npos) << what;
      EXPECT_NE(what.find(name), std::string::npos) << what;
    }
  }
  // The C API says the same.
  EnvGuard env;
  env.set("WORLD_SIZE", "2");
  epcommComm_t comm = nullptr;
  EXPECT_EQ(epcommCommInitFromEnv(&comm, nullptr), epcommInvalidUsage);
  EXPECT_NE(std::string(epcommGetLastError(nullptr)).find("EPCOMM_INIT_ADDR"), std::string::npos);
}

TEST(InitEnvironment, OneRankWorldIsFine) {
  if (underLauncher()) GTEST_SKIP() << "runs outside mpirun only";
  EnvGuard env;
  env.set("WORLD_SIZE", "1");
  env.set("RANK", "0");
  auto comm = Communicator::initFromEnvironment(Config::fromEnvironment());
  EXPECT_EQ(comm->size(), 1);
}

}  // namespace
}  // namespace epcomm::test
