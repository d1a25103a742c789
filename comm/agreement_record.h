// The record behind every cross-rank agreement (header-only, so backend plugins use it over
// the C ABI alone). Each rank fills one fixed-size array of int64 slots; an element-wise max
// over the ranks (any all-reduce) then tells every rank the same verdict:
//   [0]            0 when every rank is fine, else 1 + the highest failing rank
//   [1], [2]       call id, ~call id          (differ: ranks called different things)
//   [3 + 2i, +1]   same value i, ~value       (~v orders in reverse, so max(~v) = ~min(v):
//                                              both ends without overflow)
//   [3 + 2S + j]   maximum j                  (values the caller wants the maximum of)
// Communicator::agree (comm/agreement.cpp) settles it with its own all-reduce; a backend may
// append its payload and settle it inside its first data step (backends/mpi/call_check.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "types.h"

namespace epcomm {

class AgreementRecord {
 public:
  static constexpr std::size_t slotsFor(std::size_t numSame, std::size_t numMaxima) {
    return 3 + 2 * numSame + numMaxima;
  }

  // A view over slotsFor(numSame, numMaxima) slots owned by the caller.
  AgreementRecord(std::int64_t* slots, std::size_t numSame, std::size_t numMaxima)
      : v_(slots), numSame_(numSame), numMaxima_(numMaxima) {}

  // This rank's record: unused same values agree (0), unused maxima are 0.
  void fill(int rank, bool ok, std::int64_t callId) {
    v_[0] = ok ? 0 : std::int64_t{rank} + 1;
    v_[1] = callId;
    v_[2] = ~callId;
    for (std::size_t i = 0; i < numSame_; ++i) setSame(i, 0);
    for (std::size_t j = 0; j < numMaxima_; ++j) setMax(j, 0);
  }
  void setSame(std::size_t i, std::int64_t value) {
    v_[3 + 2 * i] = value;
    v_[4 + 2 * i] = ~value;
  }
  void setMax(std::size_t j, std::int64_t value) { v_[3 + 2 * numSame_ + j] = value; }

  // The reduction: element-wise max of n slots.
  static void combine(const std::int64_t* in, std::int64_t* inout, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) inout[i] = in[i] > inout[i] ? in[i] : inout[i];
  }

  // After the reduction (the same answers on every rank).
  int failedRank() const { return static_cast<int>(v_[0]) - 1; }  // -1: none failed
  bool sameCall() const { return v_[1] == ~v_[2]; }
  std::int64_t largest(std::size_t i) const { return v_[3 + 2 * i]; }
  std::int64_t smallest(std::size_t i) const { return ~v_[4 + 2 * i]; }
  bool agrees(std::size_t i) const { return largest(i) == smallest(i); }
  std::int64_t maxOf(std::size_t j) const { return v_[3 + 2 * numSame_ + j]; }

  // The messages every layer gives for a verdict (one wording across backends).
  static std::string failedMessage(int failedRank) {
    return "rank " + std::to_string(failedRank) +
           " passed invalid arguments (its error names them); no data was moved";
  }
  static std::string differentCallMessage(const std::string& thisCall) {
    return "ranks called different collectives at the same point (this rank called " + thisCall +
           "); no data was moved";
  }
  static std::string disagreeMessage(const std::string& name, const std::string& mine,
                                     std::int64_t smallest, std::int64_t largest) {
    return "ranks disagree on " + name + ": " + name + " differs across ranks (this rank " +
           valueText(name, mine) + ", smallest " + valueText(name, std::to_string(smallest)) +
           ", largest " + valueText(name, std::to_string(largest)) +
           "); every rank must pass the same; no data was moved";
  }
  // A shape's value for messages: data types and reduce ops by name ("f32 (7)").
  static std::string valueText(const std::string& name, const std::string& value) {
    if (name != "dtype" && name != "op") return value;
    char* end = nullptr;
    const long long v = std::strtoll(value.c_str(), &end, 10);
    if (end == value.c_str() || *end != '\0') return value;
    const std::string_view text =
        name == "dtype" ? toString(static_cast<DataType>(v)) : toString(static_cast<ReduceOp>(v));
    return std::string(text) + " (" + value + ")";
  }

 private:
  std::int64_t* v_;
  std::size_t numSame_;
  std::size_t numMaxima_;
};

}  // namespace epcomm
