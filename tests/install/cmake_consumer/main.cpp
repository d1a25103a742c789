// Built against an installed epcomm: find_package(epcomm) -> epcomm::epcomm + epcomm::ep, or
// pkg-config epcomm-ep; at C++17 and C++20, with its own "comm/config.h" on its include path.
// Includes every installed C++ header.
#include <epcomm/comm/backend_plugin.h>
#include <epcomm/comm/communicator.h>
#include <epcomm/comm/config.h>
#include <epcomm/comm/half.h>
#include <epcomm/comm/window.h>
#include <epcomm/ep/buffer.h>
#include <epcomm/ep/epcomm_ep.h>
#include <epcomm/ep/row_kernels.h>
#include <cstdio>

#include "comm/config.h"  // the consumer's own

int main() {
  const consumer::Config own;
  try {
    auto comm = epcomm::Communicator::initFromEnvironment();
    float v[5] = {1, 2, 3, 4, 5};
    comm->allReduce(v, v, 5, epcomm::DataType::kF32, epcomm::ReduceOp::kMax);
    bool ok = v[4] == 5.0f && own.threads == 3;
    ok = ok && epcomm::toFloat(epcomm::toBf16(1.5f)) == 1.5f;
    epcomm::ep::Buffer buffer(*comm, epcomm::ep::BufferConfig{});
    std::printf("cmake consumer (C++%ld): rank %d of %d on %s %s\n", __cplusplus / 100 % 100,
                comm->rank(), comm->size(), comm->backendName().c_str(), ok ? "ok" : "WRONG");
    return ok ? 0 : 1;
  } catch (const epcomm::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
