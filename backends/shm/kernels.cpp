#include "backends/shm/kernels.h"

#include <atomic>

namespace epcomm::shm {
namespace {

// EPCOMM_SHM_ISA as the first backend created resolved it (0: not chosen yet).
std::atomic<int> gChosenIsa{0};

}  // namespace

void chooseKernelIsa(std::string_view want) {
  int none = 0;
  gChosenIsa.compare_exchange_strong(none, static_cast<int>(kernels::chooseIsa(want)));
}

Isa kernelIsa() {
  static const Isa isa = [] {
    const int chosen = gChosenIsa.load();
    return chosen != 0 ? static_cast<Isa>(chosen) : kernels::detectedIsa();
  }();
  return isa;
}

}  // namespace epcomm::shm
