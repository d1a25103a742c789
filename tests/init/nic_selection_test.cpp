// Interface selection under mpirun (no MPI_Init before epcomm's): each ctest entry runs one
// test with its own environment, since MPI can be initialised once per process.
//  - BadSelectionFails: EPCOMM_SOCKET_IFNAME matches nothing -> an error on every rank
//    naming the knob and its value.
//  - SelectionReachesOpenMpi: the selected interface is what Open MPI's btl/tcp reads as
//    btl_tcp_if_include (its MPI_T control variable), and data flows over it.
//  - UserParameterWins: OMPI_MCA_btl_tcp_if_include set by the user stays as it is.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace epcomm {
namespace {

// Open MPI's value of a string control variable, read through MPI_T ("" when absent).
std::string openMpiParameter(const char* wanted) {
  int provided = 0, count = 0;
  MPI_T_init_thread(MPI_THREAD_SINGLE, &provided);
  MPI_T_cvar_get_num(&count);
  std::string value;
  for (int i = 0; i < count && value.empty(); ++i) {
    char name[256];
    int nameLen = sizeof name, verbosity = 0, bind = 0, scope = 0;
    MPI_Datatype type;
    MPI_T_enum enumType;
    if (MPI_T_cvar_get_info(i, name, &nameLen, &verbosity, &type, &enumType, nullptr, nullptr,
                            &bind, &scope) != MPI_SUCCESS ||
        std::string(name) != wanted || type != MPI_CHAR) {
      continue;
    }
    MPI_T_cvar_handle handle;
    int n = 0;
    if (MPI_T_cvar_handle_alloc(i, nullptr, &handle, &n) != MPI_SUCCESS) continue;
    std::vector<char> text(static_cast<std::size_t>(n) + 2, 0);
    MPI_T_cvar_read(handle, text.data());
    MPI_T_cvar_handle_free(&handle);
    value = text.data();
  }
  MPI_T_finalize();
  return value;
}

TEST(NicSelection, BadSelectionFails) {
  try {
    auto comm = Communicator::initFromEnvironment();
    ADD_FAILURE() << "EPCOMM_SOCKET_IFNAME=nosuch accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << what;
    EXPECT_NE(what.find("nosuch"), std::string::npos) << what;
    EXPECT_NE(what.find("SOCKET_IFNAME"), std::string::npos) << what;
  }
}

TEST(NicSelection, SelectionReachesOpenMpi) {
  auto comm = Communicator::initFromEnvironment();
  EXPECT_EQ(openMpiParameter("btl_tcp_if_include"), "lo");
  int v = comm->rank() + 1;
  comm->allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
  EXPECT_EQ(v, comm->size() * (comm->size() + 1) / 2);
}

TEST(NicSelection, UserParameterWins) {
  auto comm = Communicator::initFromEnvironment();
  // Left as the user set it (Open MPI itself then reads the CIDR range as "lo").
  EXPECT_STREQ(std::getenv("OMPI_MCA_btl_tcp_if_include"), "127.0.0.1/8");
  EXPECT_EQ(openMpiParameter("btl_tcp_if_include"), "lo");
  int v = 1;
  comm->allReduce(&v, &v, 1, DataType::kI32, ReduceOp::kSum);
  EXPECT_EQ(v, comm->size());
}

}  // namespace
}  // namespace epcomm
