#include "comm/kernels/isa.h"

namespace epcomm::kernels {
namespace {

Isa detect() {
#ifdef EPCOMM_KERNELS_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (!avx2) return Isa::kPortable;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    return Isa::kAvx512;
  }
  return Isa::kAvx2;
#else
  return Isa::kPortable;
#endif
}

}  // namespace

Isa detectedIsa() {
  static const Isa isa = detect();
  return isa;
}

Isa atMost(Isa want) {
  const Isa best = detectedIsa();
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

Isa chooseIsa(std::string_view want) {
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (want == isaName(isa)) return atMost(isa);
  }
  return detectedIsa();
}

const char* isaName(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    case Isa::kPortable: break;
  }
  return "portable";
}

}  // namespace epcomm::kernels
