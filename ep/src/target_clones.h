// EPCOMM_EP_CLONES: function multiversioning for the per-row loops (AVX-512, AVX2, baseline
// x86-64, chosen at load time through an IFUNC resolver).
#pragma once

// Under -fsanitize=thread GCC instruments the compiler-made resolver (__tsan_func_entry), and
// the dynamic loader runs it while relocating, before the TSan runtime is up: the program
// dies with SIGSEGV before main. TSan builds therefore compile the default version only.
#if defined(__SANITIZE_THREAD__)
#define EPCOMM_EP_CLONES
#else
#define EPCOMM_EP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
