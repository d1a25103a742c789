// Inputs and reference checks of ep-bench. Routing follows DeepEP's benchmarks (|Gaussian|
// scores, top-k distinct experts, a few -1 slots); every rank can regenerate any rank's
// inputs from (seed, rank). Checked runs use DeepEP's oracles: rows filled with their source
// rank, the token index in the last two channels (lo, hi byte).
#pragma once

#include <cstdint>
#include <vector>

#include "comm/half.h"
#include "ep/low_latency.h"
#include "ep/quant.h"

namespace epcomm::bench {

struct EpData {
  int numTokens = 0;
  int hidden = 0;
  int numTopk = 0;
  int numExperts = 0;
  std::vector<Bf16> x;
  std::vector<std::int64_t> topkIdx;
  std::vector<float> topkWeights;
};

// rankRows: the oracle fill; otherwise Gaussian tokens.
EpData makeEpData(int seed, int rank, int numTokens, int hidden, int numTopk, int numExperts,
                  bool rankRows);

// The row rank `src`'s token t has in a rankRows fill, as the receiver must see it (int8:
// quantised and dequantised with `quant`).
void expectedRow(int src, int t, int hidden, ep::Quant quant, Bf16* out);

// Copies the valid rows of an expert-major [local, T * R, hidden] array (out's recvCount).
void copyValidRows(const ep::LowLatencyDispatchOutputs& out, int hidden, const Bf16* from,
                   Bf16* to);
// The received rows into the expert-major `to`: copied from recvX, or, after a zero-copy
// dispatch, gathered from where they live (what an expert kernel's packing does).
void copyReceivedRows(const ep::LowLatencyDispatchOutputs& out, int hidden, Bf16* to);

// DeepEP's calc_diff on x + 1, y + 1.
double calcDiff(const Bf16* x, const double* scale, const Bf16* y, int rows, int hidden);

}  // namespace epcomm::bench
