// ep-bench's effective configuration: the library's knobs (the same environment the library
// reads: DEEP_NORMAL_MODE_USE_INT8_QUANT, SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK,
// DEEPEP_NORMAL_LONG_SEQ_*, ...) with ep-bench's flags over them, and where each value came
// from ("flag --int8", the variable's name, or "default"), for the report's header and JSON.
#pragma once

#include <string>

#include "comm/config.h"
#include "ep/buffer.h"

namespace epcomm::bench {

// What the command line said; empty / 0 = not given (the environment decides).
struct EpFlags {
  std::string quant;  // "bf16", "int8", "int8-token"
  int llMaxTokens = 0;
  int rounds = -1;  // -1: not given
  int roundTokens = -1;
  std::string transport;  // "auto", "window", "collective"
};

struct Sourced {
  std::string value;
  std::string source;
};

struct EpEffectiveConfig {
  ep::BufferConfig buffer;  // what the ep::Buffer is made with
  ep::Quant quant = ep::Quant::kNone;
  Sourced quantText, llMaxTokens, rounds, roundTokens, combineRounds, transport, backend;
};

// Flags over Config (the environment). Throws epcomm::Error on a malformed knob, as the
// library does.
EpEffectiveConfig resolveEpConfig(const EpFlags& flags, const Config& config);

// "quant int8 (DEEP_NORMAL_MODE_USE_INT8_QUANT) T 16 (SGLANG_...) ..." for the header.
std::string describe(const EpEffectiveConfig& c);

}  // namespace epcomm::bench
