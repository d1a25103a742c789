// The per-row metadata of normal-mode dispatch (layout in ep/src/normal_plan.h): written by
// the sender for one destination, read by the receiver into its outputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ep/normal.h"

namespace epcomm::ep {

// Writes the metadata record of token t for destination rank `dest` (see NormalPlan): its
// topk ids `idx` (global, -1 none; any integer type) and weights (f32 values at `weights`,
// any alignment; null: zeros) made local to `dest`, then the int8 scales.
template <typename Index>
void writeMetaOf(std::int32_t* rec, int t, const Index* idx, const void* weights, int dest,
                 int numLocal, int numTopk, const float* scales, int numScales) {
  if (numTopk > 0) {
    rec[0] = t;
    const std::int64_t lo = static_cast<std::int64_t>(dest) * numLocal;
    for (int k = 0; k < numTopk; ++k) {
      const std::int64_t e = static_cast<std::int64_t>(idx[k]);
      const bool local = e >= lo && e < lo + numLocal;
      rec[1 + k] = local ? static_cast<std::int32_t>(e - lo) : -1;
      float weight = 0.f;
      if (local && weights) {
        std::memcpy(&weight, static_cast<const std::byte*>(weights) + k * sizeof(float),
                    sizeof weight);
      }
      std::memcpy(&rec[1 + numTopk + k], &weight, sizeof weight);
    }
    rec += 1 + 2 * numTopk;
  }
  if (numScales > 0) std::memcpy(rec, scales, sizeof(float) * numScales);
}

// writeMetaOf for token t of the dispatch's inputs.
inline void writeMeta(std::int32_t* rec, const DispatchInputs& in, int t, int dest, int numLocal,
                      int numTopk, const float* scales, int numScales) {
  const std::size_t at = static_cast<std::size_t>(t) * static_cast<std::size_t>(numTopk);
  writeMetaOf(rec, t, numTopk > 0 ? in.topkIdx + at : in.topkIdx,
              in.topkWeights && numTopk > 0 ? in.topkWeights + at : nullptr, dest, numLocal,
              numTopk, scales, numScales);
}

// Copies one received metadata record into the outputs at recv row `row`.
inline void readMeta(const std::int32_t* rec, DispatchOutputs& out, std::size_t row, int numTopk,
                     int numScales) {
  if (numTopk > 0) {
    out.handle.recvSrcIdx[row] = rec[0];
    std::int64_t* idx = out.recvTopkIdx.data() + row * numTopk;
    for (int k = 0; k < numTopk; ++k) idx[k] = rec[1 + k];
    std::memcpy(out.recvTopkWeights.data() + row * numTopk, rec + 1 + numTopk,
                sizeof(float) * numTopk);
    rec += 1 + 2 * numTopk;
  }
  if (numScales > 0) {
    std::memcpy(out.recvScales.data() + row * numScales, rec, sizeof(float) * numScales);
  }
}

}  // namespace epcomm::ep
