// The instruction sets the vector kernels of comm/kernels/ are built for, the one detection of
// what this CPU has, and the lowering a knob may ask for.
//
// comm/kernels/ is epcomm_kernels, a static PIC library linked into libepcomm_ep and into the
// shm plugin, each with its own hidden copy. It includes only header-only pieces of comm/
// (half.h, types.h) and calls nothing in libepcomm, so a plugin that links it still depends
// on the C ABI alone (ctest plugins_use_only_the_c_abi). Only the kernels carry target
// attributes; the rest is built for baseline x86-64 (or any other architecture, where only
// the portable loops exist).
#pragma once

#include <string_view>

#if defined(__x86_64__) && defined(__GNUC__)
#define EPCOMM_KERNELS_X86 1
#endif

namespace epcomm::kernels {

// Ordered: each has everything the ones below it have. The values are those of the public
// ep::RowIsa (ep/row_kernels.h), which names the same choices.
enum class Isa : int {
  kPortable = 1,  // plain C++ loops
  kAvx2 = 2,      // AVX2 + FMA + F16C
  kAvx512 = 3,    // the above + AVX-512 F, BW, VL, DQ
};

// The best this CPU has, detected once per process (per copy of the library).
Isa detectedIsa();

// `want`, but never above detectedIsa() (a lower choice is for comparisons and tests).
Isa atMost(Isa want);

// A knob's value: "portable", "avx2" or "avx512" ask for at most that ISA (atMost); anything
// else ("auto") is detectedIsa(). Every ISA gives bitwise the same results.
Isa chooseIsa(std::string_view want);

// "portable", "avx2", "avx512".
const char* isaName(Isa isa);

}  // namespace epcomm::kernels
