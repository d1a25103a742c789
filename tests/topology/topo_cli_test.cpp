// epcomm-topo in this machine's own network namespace (no privileges): the JSON keys equal
// docs/topology.md, --env lists every knob with its source, bad options and failed
// selections exit non-zero with a message.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <regex>
#include <set>
#include <string>

#include "comm/config.h"
#include "comm/src/plugin_loader.h"
#include "ep/buffer.h"
#include "tests/topology/run_command.h"
#include "tests/topology/topo_json.h"

namespace epcomm::test {
namespace {

using nlohmann::json;

RunResult topo(std::vector<std::string> args, std::vector<std::string> env = {}) {
  args.insert(args.begin(), EPCOMM_TOPO_EXE);
  return runCommand(args, env);
}

TEST(TopoCli, JsonKeysAreTheDocumentedOnes) {
  const RunResult r = topo({"--json", "--ranks", "2"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  const json j = json::parse(r.out);
  std::set<std::string> emitted;
  collectPaths(j, "", emitted);
  const std::set<std::string> documented =
      documentedKeys(std::string(EPCOMM_SOURCE_DIR) + "/docs/topology.md");
  ASSERT_FALSE(documented.empty());
  for (const std::string& key : emitted) {
    EXPECT_TRUE(documented.count(key)) << key << " is printed but not in docs/topology.md";
  }
  for (const std::string& key : documented) {
    EXPECT_TRUE(emitted.count(key) || underEmptyArray(j, key))
        << key << " is documented but not printed";
  }
  // Exactly one interface is selected, the one "selection" names.
  int selected = 0;
  for (const json& n : j["interfaces"]) {
    EXPECT_TRUE(n["up"].is_boolean() && n["loopback"].is_boolean());
    EXPECT_TRUE(n["numa"].is_null() || n["numa"].is_number_integer());
    EXPECT_TRUE(n["pci"].is_null() || n["pci"].is_string());
    if (n["selected"].get<bool>()) {
      ++selected;
      EXPECT_EQ(n["name"], j["selection"]["interface"]);
    }
  }
  EXPECT_EQ(selected, 1);
  EXPECT_EQ(j["plan"]["local_ranks"], 2);
  EXPECT_EQ(j["plan"]["ranks"].size(), 2u);
}

TEST(TopoCli, EnvListsEveryKnobWithItsSource) {
  const RunResult r = topo({"--env", "--json"}, {"HCCL_BUFFSIZE=8", "GLOO_SOCKET_IFNAME=lo",
                                                 "EPCOMM_CPU_AFFINITY=1", "HCCL_EXEC_TIMEOUT=3"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  const json env = json::parse(r.out)["env"];
  // Every layer's rows, as this process registers them: comm's and topology's, ep's, and
  // the backends' (from their plugins).
  registerBackendKnobs(Config::defaults());
  ep::BufferConfig::fromConfig(Config::defaults());
  std::set<std::string> layers;
  for (const KnobInfo& knob : knobRegistry()) layers.insert(std::string(knob.layer));
  EXPECT_EQ(layers, (std::set<std::string>{"comm", "topology", "ep", "shm", "mpi", "ucx"}));
  ASSERT_EQ(env.size(), knobRegistry().size());
  std::size_t i = 0;
  for (const KnobInfo& knob : knobRegistry()) {
    const json& e = env[i++];
    EXPECT_EQ(e["name"], std::string(knob.name));
    EXPECT_EQ(e["layer"], std::string(knob.layer));
    const std::string source = e["source"];
    if (knob.name == "EPCOMM_BUFFSIZE") {
      EXPECT_EQ(source, "HCCL_BUFFSIZE");
      EXPECT_EQ(e["value"], "8");
    } else if (knob.name == "EPCOMM_SOCKET_IFNAME") {
      EXPECT_EQ(source, "GLOO_SOCKET_IFNAME");
    } else if (knob.name == "EPCOMM_CPU_AFFINITY") {
      EXPECT_EQ(source, "EPCOMM_CPU_AFFINITY");
    } else if (knob.name == "EPCOMM_TIMEOUT_MS") {
      EXPECT_EQ(source, "HCCL_EXEC_TIMEOUT");
      EXPECT_EQ(e["value"], "3000");
    } else {
      EXPECT_EQ(source, "default") << knob.name;
      EXPECT_EQ(e["value"], std::string(knob.defaultValue)) << knob.name;
    }
  }
  // The text form names the same knobs and sources.
  const RunResult text = topo({"--env"}, {"HCCL_IF_IP=127.0.0.1"});
  ASSERT_EQ(text.exitCode, 0) << text.err;
  for (const KnobInfo& knob : knobRegistry()) {
    EXPECT_NE(text.out.find(std::string(knob.name)), std::string::npos) << knob.name;
  }
  EXPECT_NE(text.out.find("[HCCL_IF_IP]"), std::string::npos) << text.out;
}

TEST(TopoCli, TextReportHasEverySection) {
  const RunResult r = topo({"-n", "2"}, {"EPCOMM_SOCKET_IFNAME==lo"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* part : {"Machine ", "PU P#", "Interfaces (* selected):", "  * lo ",
                           "Selected: lo (127.0.0.1): EPCOMM_SOCKET_IFNAME=\"=lo\"",
                           "Binding plan for 2 local ranks", "local rank 1: cpus "}) {
    EXPECT_NE(r.out.find(part), std::string::npos) << "no \"" << part << "\" in:\n" << r.out;
  }
  // The knob column is as wide as the longest knob name.
  EXPECT_TRUE(
      std::regex_search(r.out, std::regex("\n  EPCOMM_SOCKET_IFNAME +\\[topology\\] +=  ?=lo ")))
      << r.out;
}

TEST(TopoCli, FailuresExitNonZeroWithAMessage) {
  RunResult r = topo({"--json"}, {"EPCOMM_SOCKET_IFNAME==nosuch0"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("EPCOMM_SOCKET_IFNAME=\"=nosuch0\" matches no interface"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("lo (up, loopback"), std::string::npos) << r.err;
  r = topo({}, {"HCCL_IF_IP=198.51.100.250"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("HCCL_IF_IP=198.51.100.250 is the address of no interface"),
            std::string::npos)
      << r.err;
  r = topo({}, {"EPCOMM_LOG_LEVEL=loud"});
  EXPECT_EQ(r.exitCode, 1);
  EXPECT_NE(r.err.find("EPCOMM_LOG_LEVEL=\"loud\""), std::string::npos) << r.err;
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--bogus"}, {"--ranks", "0"}, {"--ranks", "x"}, {"extra"}}) {
    r = topo(bad);
    EXPECT_NE(r.exitCode, 0) << bad[0];
    EXPECT_FALSE(r.err.empty()) << bad[0];
  }
}

}  // namespace
}  // namespace epcomm::test
