#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <sstream>
#include <string>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/plugin_loader.h"
#include "ep/buffer.h"
#include "tests/common/env_guard.h"

#ifndef EPCOMM_SOURCE_DIR
#error "EPCOMM_SOURCE_DIR must point at the source tree"
#endif

namespace epcomm {
namespace {

using test::EnvGuard;

const KnobValue& find(const Config& c, const std::string& name) {
  for (const KnobValue& v : c.values) {
    if (v.name == name) return v;
  }
  throw std::runtime_error("no knob " + name);
}

TEST(Config, DefaultsComeFromTheRegistry) {
  const Config c = Config::defaults();
  EXPECT_EQ(c.backend, "auto");
  EXPECT_EQ(c.timeoutMs, 300000);
  EXPECT_EQ(c.connectTimeoutS, 120);
  EXPECT_EQ(c.bufferBytes, 64u << 20);
  EXPECT_TRUE(c.checkArgs);
  EXPECT_EQ(c.values.size(), knobRegistry().size());
  for (const KnobValue& v : c.values) EXPECT_EQ(v.source, "default");
}

TEST(Config, OwnNamesWinOverAliases) {
  EnvGuard env;
  env.set("HCCL_BUFFSIZE", "200");
  env.set("HCCL_EXEC_TIMEOUT", "7");
  env.set("HCCL_CONNECT_TIMEOUT", "30");
  env.set("WORLD_SIZE", "4");
  env.set("RANK", "2");
  Config c = Config::fromEnvironment();
  EXPECT_EQ(c.bufferBytes, 200u << 20);
  EXPECT_EQ(c.timeoutMs, 7000);  // seconds scaled to ms
  EXPECT_EQ(c.connectTimeoutS, 30);
  EXPECT_EQ(c.initSize, 4);
  EXPECT_EQ(c.initRank, 2);
  EXPECT_EQ(find(c, "EPCOMM_TIMEOUT_MS").source, "HCCL_EXEC_TIMEOUT");
  env.set("EPCOMM_BUFFSIZE", "8");
  env.set("EPCOMM_TIMEOUT_MS", "1500");
  c = Config::fromEnvironment();
  EXPECT_EQ(c.bufferBytes, 8u << 20);
  EXPECT_EQ(c.timeoutMs, 1500);
  EXPECT_EQ(find(c, "EPCOMM_BUFFSIZE").source, "EPCOMM_BUFFSIZE");
}

// 0 = no deadline, as HCCL_EXEC_TIMEOUT=0 in HCCL.
TEST(Config, ZeroTimeoutMeansNone) {
  EnvGuard env;
  env.set("HCCL_EXEC_TIMEOUT", "0");
  EXPECT_EQ(Config::fromEnvironment().timeoutMs, 0);
  env.set("EPCOMM_TIMEOUT_MS", "0");
  EXPECT_EQ(Config::fromEnvironment().timeoutMs, 0);
}

// Booleans as engines write them: 1/0/true/false in any case.
TEST(Config, BooleansAcceptWhatEnginesWrite) {
  EnvGuard env;
  for (const auto& [text, want] :
       {std::pair{"1", true}, std::pair{"true", true}, std::pair{"TRUE", true},
        std::pair{"True", true}, std::pair{"0", false}, std::pair{"false", false},
        std::pair{"FALSE", false}}) {
    env.set("SGLANG_SET_CPU_AFFINITY", text);
    env.set("EPCOMM_CHECK_ARGS", want ? "true" : "False");
    const Config c = Config::fromEnvironment();
    EXPECT_EQ(c.cpuAffinity, want) << text;
    EXPECT_EQ(c.checkArgs, want) << text;
  }
  for (const char* bad : {"yes", "2", "", "truee"}) {
    EXPECT_EQ(parseBoolean(bad), std::nullopt) << bad;
  }
}

TEST(Config, MalformedValuesNameTheVariable) {
  const std::pair<const char*, const char*> cases[] = {{"EPCOMM_TIMEOUT_MS", "soon"},
                                                       {"EPCOMM_BUFFSIZE", "0"},
                                                       {"EPCOMM_LOG_LEVEL", "loud"},
                                                       {"EPCOMM_CHECK_ARGS", "yes"},
                                                       {"HCCL_EXEC_TIMEOUT", "-1"},
                                                       {"EPCOMM_SIZE", "0"},
                                                       {"EPCOMM_EP_TRANSPORT", "fast"},
                                                       {"DEEP_NORMAL_MODE_USE_INT8_QUANT", "2"},
                                                       // topology's rows
                                                       {"EPCOMM_IF_IP", "eth0"},
                                                       {"HCCL_IF_IP", "10.0.0.300"},
                                                       {"EPCOMM_CPU_AFFINITY", "maybe"},
                                                       {"SGLANG_SET_CPU_AFFINITY", "2"},
                                                       {"HCCL_SOCKET_IFNAME", "^"},
                                                       {"EPCOMM_SOCKET_IFNAME", "^=,"}};
  for (const auto& [name, value] : cases) {
    EnvGuard env;
    env.set(name, value);
    try {
      Config::fromEnvironment();
      ADD_FAILURE() << name << "=" << value << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(value), std::string::npos) << e.what();
    }
  }
}

// docs/configuration.md documents every layer's knobs once, with the registry's layer,
// default and aliases (ep's rows register as libepcomm_ep loads, the backends' as their
// plugins load).
TEST(Config, DocumentationMatchesRegistry) {
  registerBackendKnobs(Config::defaults());
  ep::BufferConfig::fromConfig(Config::defaults());
  std::ifstream in(std::string(EPCOMM_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md missing";
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  for (const KnobInfo& knob : knobRegistry()) {
    const std::string row = "| `" + std::string(knob.name) + "` |";
    const std::size_t at = doc.find(row);
    ASSERT_NE(at, std::string::npos) << knob.name << " is not documented";
    EXPECT_EQ(doc.find(row, at + 1), std::string::npos) << knob.name << " documented twice";
    const std::string line = doc.substr(at, doc.find('\n', at) - at);
    EXPECT_NE(line.find("| " + std::string(knob.layer) + " |"), std::string::npos)
        << knob.name << ": layer " << knob.layer << " not in: " << line;
    const std::string def =
        knob.defaultValue.empty() ? "(unset)" : "`" + std::string(knob.defaultValue) + "`";
    EXPECT_NE(line.find(def), std::string::npos)
        << knob.name << ": default " << def << " not in: " << line;
    for (const KnobAlias& alias : knob.aliases) {
      EXPECT_NE(line.find(std::string(alias.name)), std::string::npos)
          << knob.name << " alias " << alias.name;
    }
  }
}

}  // namespace
}  // namespace epcomm
