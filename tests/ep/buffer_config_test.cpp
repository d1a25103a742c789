// ep::BufferConfig::fromConfig: the seed deployments' DeepEP knobs as they write them.
#include <gtest/gtest.h>

#include "comm/config.h"
#include "comm/error.h"
#include "ep/buffer.h"
#include "tests/common/env_guard.h"

namespace epcomm::test {
namespace {

TEST(BufferConfig, DeepEpKnobsAsEnginesWriteThem) {
  EnvGuard env;
  env.set("DEEPEP_NORMAL_LONG_SEQ_ROUND", "72");
  env.set("DEEPEP_NORMAL_LONG_SEQ_PER_ROUND_TOKENS", "1024");
  env.set("DEEPEP_NORMAL_COMBINE_ENABLE_LONG_SEQ", "true");
  env.set("DEEP_NORMAL_MODE_USE_INT8_QUANT", "True");
  ep::BufferConfig c = ep::BufferConfig::fromConfig(Config::fromEnvironment());
  EXPECT_EQ(c.rounds, 72);
  EXPECT_EQ(c.roundTokens, 1024);
  EXPECT_TRUE(c.combineRounds);
  EXPECT_TRUE(c.int8);
  env.set("DEEPEP_NORMAL_COMBINE_ENABLE_LONG_SEQ", "FALSE");
  env.set("DEEP_NORMAL_MODE_USE_INT8_QUANT", "0");
  c = ep::BufferConfig::fromConfig(Config::fromEnvironment());
  EXPECT_FALSE(c.combineRounds);
  EXPECT_FALSE(c.int8);
  env.set("DEEPEP_NORMAL_COMBINE_ENABLE_LONG_SEQ", "yes");
  try {
    ep::BufferConfig::fromConfig(Config::fromEnvironment());
    ADD_FAILURE() << "yes accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("DEEPEP_NORMAL_COMBINE_ENABLE_LONG_SEQ"),
              std::string::npos)
        << e.what();
  }
}

TEST(BufferConfig, DefaultsSplitNothing) {
  const ep::BufferConfig c = ep::BufferConfig::fromConfig(Config::defaults());
  EXPECT_EQ(c.rounds, 0);
  EXPECT_EQ(c.roundTokens, 0);
  EXPECT_FALSE(c.combineRounds);
}

}  // namespace
}  // namespace epcomm::test
