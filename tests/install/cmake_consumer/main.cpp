// Built against an installed epcomm with find_package(epcomm) -> epcomm::epcomm.
#include <epcomm/comm/communicator.h>

#include <cstdio>

int main() {
  try {
    auto comm = epcomm::Communicator::initFromEnvironment();
    float v[5] = {1, 2, 3, 4, 5};
    comm->allReduce(v, v, 5, epcomm::DataType::kF32, epcomm::ReduceOp::kMax);
    const bool ok = v[4] == 5.0f;
    std::printf("cmake consumer: rank %d of %d on %s %s\n", comm->rank(), comm->size(),
                comm->backendName().c_str(), ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
  } catch (const epcomm::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
