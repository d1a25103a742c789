#include "bench/ep_bench_config.h"

#include <fmt/format.h>

#include <string_view>

namespace epcomm::bench {
namespace {

// The value and source of a knob as Config resolved it ("default", or the variable's name).
Sourced knob(const Config& config, std::string_view name) {
  const KnobValue v = config.value(name);
  return {v.value, v.source};
}

std::string quantName(ep::Quant q) {
  return q == ep::Quant::kInt8Group      ? "int8"
         : q == ep::Quant::kInt8PerToken ? "int8-token"
                                         : "bf16";
}

const char* transportName(ep::Transport t) {
  return t == ep::Transport::kWindow       ? "window"
         : t == ep::Transport::kCollective ? "collective"
                                           : "auto";
}

}  // namespace

EpEffectiveConfig resolveEpConfig(const EpFlags& flags, const Config& config) {
  EpEffectiveConfig c;
  c.buffer = ep::BufferConfig::fromConfig(config);
  // Quantisation: the flag, else the Buffer's default (EPCOMM_EP_INT8 and its alias, with
  // EPCOMM_EP_QUANT_GROUP choosing per-128 or per-token scales).
  if (!flags.quant.empty()) {
    c.quant = flags.quant == "int8"         ? ep::Quant::kInt8Group
              : flags.quant == "int8-token" ? ep::Quant::kInt8PerToken
                                            : ep::Quant::kNone;
    c.quantText = {quantName(c.quant), "flag --quant"};
  } else {
    c.quant = !c.buffer.int8             ? ep::Quant::kNone
              : c.buffer.quantGroup == 0 ? ep::Quant::kInt8PerToken
                                         : ep::Quant::kInt8Group;
    c.quantText = {quantName(c.quant), knob(config, "EPCOMM_EP_INT8").source};
  }
  c.llMaxTokens = knob(config, "EPCOMM_EP_LL_MAX_TOKENS");
  if (flags.llMaxTokens > 0) {
    c.buffer.llMaxTokens = flags.llMaxTokens;
    c.llMaxTokens.source = "flag --ll-max-tokens";
  }
  c.llMaxTokens.value = std::to_string(c.buffer.llMaxTokens);
  c.rounds = knob(config, "EPCOMM_EP_ROUNDS");
  if (flags.rounds >= 0) {
    c.buffer.rounds = flags.rounds;
    c.rounds.source = "flag --rounds";
  }
  c.rounds.value = std::to_string(c.buffer.rounds);
  c.roundTokens = knob(config, "EPCOMM_EP_ROUND_TOKENS");
  if (flags.roundTokens >= 0) {
    c.buffer.roundTokens = flags.roundTokens;
    c.roundTokens.source = "flag --round-tokens";
  }
  c.roundTokens.value = std::to_string(c.buffer.roundTokens);
  c.combineRounds = knob(config, "EPCOMM_EP_COMBINE_ROUNDS");
  c.combineRounds.value = c.buffer.combineRounds ? "1" : "0";
  c.transport = knob(config, "EPCOMM_EP_TRANSPORT");
  if (!flags.transport.empty()) {
    c.buffer.transport = flags.transport == "window"       ? ep::Transport::kWindow
                         : flags.transport == "collective" ? ep::Transport::kCollective
                                                           : ep::Transport::kAuto;
    c.transport.source = "flag --transport";
  }
  c.transport.value = transportName(c.buffer.transport);
  c.backend = knob(config, "EPCOMM_BACKEND");
  return c;
}

std::string describe(const EpEffectiveConfig& c) {
  auto item = [](const char* name, const Sourced& s) {
    return fmt::format("{} {} ({})", name, s.value, s.source);
  };
  return fmt::format("{} {} {} {} {} {} {}", item("quant", c.quantText), item("T", c.llMaxTokens),
                     item("rounds", c.rounds), item("round_tokens", c.roundTokens),
                     item("combine_rounds", c.combineRounds), item("transport", c.transport),
                     item("backend", c.backend));
}

}  // namespace epcomm::bench
