// ep's knobs: each one row, registered when libepcomm_ep loads, bound to a BufferConfig
// field by BufferConfig::fromConfig. The library's environment is the seed deployments'
// (DeepEP's, DeepEP-Ascend's and SGLang's names are aliases).
#include <vector>

#include "comm/config.h"
#include "ep/buffer.h"

namespace epcomm::ep {
namespace {

const std::vector<KnobInfo>& epKnobs() {
  static const std::vector<KnobInfo> kRows = {
      {.name = "EPCOMM_EP_BUFFSIZE",
       .defaultValue = "1024",
       .meaning = "ep::Buffer normal-mode staging, MiB: bounds one dispatch or combine round "
                  "(reserved address space, touched as used)",
       .type = KnobType::kInteger,
       .unit = "MiB",
       .min = 1,
       .max = 1 << 20,
       .layer = "ep"},
      {.name = "EPCOMM_EP_ROUNDS",
       .aliases = {{"DEEPEP_NORMAL_LONG_SEQ_ROUND", 1}},
       .defaultValue = "0",
       .meaning = "at most this many normal-mode rounds (DeepEP-Ascend's long-sequence "
                  "rounds): a batch beyond rounds x EPCOMM_EP_ROUND_TOKENS gets larger "
                  "rounds; 0: no limit",
       .type = KnobType::kInteger,
       .min = 0,
       .max = 1 << 20,
       .layer = "ep"},
      {.name = "EPCOMM_EP_ROUND_TOKENS",
       .aliases = {{"DEEPEP_NORMAL_LONG_SEQ_PER_ROUND_TOKENS", 1}},
       .defaultValue = "0",
       .meaning = "source tokens per normal-mode round (long sequences); a batch that fits "
                  "one round runs in one; 0: one round",
       .type = KnobType::kInteger,
       .min = 0,
       .max = 1 << 30,
       .layer = "ep"},
      {.name = "EPCOMM_EP_COMBINE_ROUNDS",
       .aliases = {{"DEEPEP_NORMAL_COMBINE_ENABLE_LONG_SEQ", 1}},
       .defaultValue = "0",
       .meaning = "1 (or true): normal-mode combine in the dispatch's rounds too",
       .type = KnobType::kBoolean,
       .layer = "ep"},
      {.name = "EPCOMM_EP_INT8",
       .aliases = {{"DEEP_NORMAL_MODE_USE_INT8_QUANT", 1}},
       .defaultValue = "0",
       .meaning = "1 (or true): normal-mode dispatch sends int8 + f32 scales by default",
       .type = KnobType::kBoolean,
       .layer = "ep"},
      {.name = "EPCOMM_EP_QUANT_GROUP",
       .defaultValue = "128",
       .meaning = "int8 channels per scale: 128, or 0 for one scale per token",
       .type = KnobType::kChoice,
       .choices = {"128", "0"},
       .layer = "ep"},
      {.name = "EPCOMM_EP_LL_MAX_TOKENS",
       .aliases = {{"SGLANG_DEEPEP_NUM_MAX_DISPATCH_TOKENS_PER_RANK", 1}},
       .defaultValue = "128",
       .meaning = "low-latency capacity T: tokens per rank per dispatch",
       .type = KnobType::kInteger,
       .min = 1,
       .max = 1 << 20,
       .layer = "ep"},
      {.name = "EPCOMM_EP_TRANSPORT",
       .defaultValue = "auto",
       .meaning = "how ep::Buffer moves data: window (puts + signals through symmetric "
                  "windows), collective (all-to-all-v, any backend), or auto (window when the "
                  "backend has windows and every rank is on this host)",
       .type = KnobType::kChoice,
       .choices = {"auto", "window", "collective"},
       .layer = "ep"},
      {.name = "EPCOMM_EP_HOST_RELAY",
       .defaultValue = "1",
       .meaning = "1 (or true): across hosts (the same number of ranks on each), normal-mode "
                  "dispatch sends each token to each remote host once, to the rank with the "
                  "sender's local index there, which forwards it inside its host; combine sums "
                  "inside that host first (DeepEP's internode way); calls in one round with "
                  "the collective transport. 0: one copy per remote rank",
       .type = KnobType::kBoolean,
       .layer = "ep"},
  };
  return kRows;
}

// Registered as libepcomm_ep loads, so a Config made after it lists ep's rows.
const bool kRegistered = (registerKnobs(epKnobs()), true);

}  // namespace

BufferConfig BufferConfig::fromConfig(const Config& config) {
  registerKnobs(epKnobs());  // idempotent; for a Config made before the library loaded
  BufferConfig c;
  c.normalBytes = static_cast<std::size_t>(config.integer("EPCOMM_EP_BUFFSIZE")) << 20;
  c.rounds = static_cast<int>(config.integer("EPCOMM_EP_ROUNDS"));
  c.roundTokens = static_cast<int>(config.integer("EPCOMM_EP_ROUND_TOKENS"));
  c.combineRounds = config.boolean("EPCOMM_EP_COMBINE_ROUNDS");
  c.int8 = config.boolean("EPCOMM_EP_INT8");
  c.quantGroup = static_cast<int>(config.integer("EPCOMM_EP_QUANT_GROUP"));
  c.llMaxTokens = static_cast<int>(config.integer("EPCOMM_EP_LL_MAX_TOKENS"));
  c.hostRelay = config.boolean("EPCOMM_EP_HOST_RELAY");
  const std::string transport = config.text("EPCOMM_EP_TRANSPORT");
  c.transport = transport == "window"       ? Transport::kWindow
                : transport == "collective" ? Transport::kCollective
                                            : Transport::kAuto;
  return c;
}

}  // namespace epcomm::ep
