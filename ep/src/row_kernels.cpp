// ep::sumRows: the cases the formula leaves open (no rows, one unweighted row, null weights),
// then the kernel of comm/kernels/sum_rows.h on the ISA asked for.
#include "ep/row_kernels.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "comm/kernels/isa.h"
#include "comm/kernels/sum_rows.h"

namespace epcomm::ep {
namespace {

// RowIsa names kernels::Isa's choices (plus kAuto) with the same values.
static_assert(static_cast<int>(RowIsa::kPortable) == static_cast<int>(kernels::Isa::kPortable));
static_assert(static_cast<int>(RowIsa::kAvx2) == static_cast<int>(kernels::Isa::kAvx2));
static_assert(static_cast<int>(RowIsa::kAvx512) == static_cast<int>(kernels::Isa::kAvx512));

constexpr int kMaxStackRows = 64;

}  // namespace

RowIsa rowIsa() {
  return static_cast<RowIsa>(kernels::detectedIsa());
}

void sumRows(const Bf16* const* rows, const float* weights, int numRows, int hidden, Bf16* out,
             RowIsa isa) {
  if (hidden <= 0) return;
  if (numRows <= 0) {
    std::memset(out, 0, static_cast<std::size_t>(hidden) * sizeof(Bf16));
    return;
  }
  if (numRows == 1 && !weights) {
    std::memcpy(out, rows[0], static_cast<std::size_t>(hidden) * sizeof(Bf16));
    return;
  }
  float stackOnes[kMaxStackRows];
  std::vector<float> heapOnes;
  const float* w = weights;
  if (!w) {
    if (numRows <= kMaxStackRows) {
      std::fill(stackOnes, stackOnes + numRows, 1.f);
      w = stackOnes;
    } else {
      heapOnes.assign(static_cast<std::size_t>(numRows), 1.f);
      w = heapOnes.data();
    }
  }
  const kernels::Isa use = isa == RowIsa::kAuto ? kernels::detectedIsa()
                                                : kernels::atMost(static_cast<kernels::Isa>(isa));
  kernels::sumRowsBf16(use, reinterpret_cast<const std::uint16_t* const*>(rows), w, numRows, hidden,
                       reinterpret_cast<std::uint16_t*>(out));
}

}  // namespace epcomm::ep
