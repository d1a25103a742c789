#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/plugin_loader.h"

#ifndef EPCOMM_TEST_PLUGIN_DIR
#error "EPCOMM_TEST_PLUGIN_DIR must name the folder of the test plugins"
#endif

namespace epcomm {
namespace {

Config withPath(const std::string& path) {
  Config c = Config::defaults();
  c.pluginPath = path;
  return c;
}

void expectLoadError(const std::string& name, const Config& config, ErrorCode code,
                     const std::vector<std::string>& fragments) {
  try {
    loadBackendPlugin(name, config, 3);
    ADD_FAILURE() << "loaded " << name;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    for (const std::string& f : fragments) {
      EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what() << "\nlacks: " << f;
    }
  }
}

TEST(PluginLoader, SearchOrderStartsWithThePluginPath) {
  const auto dirs = pluginSearchPath(withPath("/a:/b"));
  ASSERT_GE(dirs.size(), 3u);
  EXPECT_EQ(dirs[0], "/a");
  EXPECT_EQ(dirs[1], "/b");
}

TEST(PluginLoader, MissingPluginSaysWhereItLooked) {
  expectLoadError(
      "nosuch", withPath("/tmp/epcomm-nowhere"), ErrorCode::kInvalidArgument,
      {"rank 3", "libepcomm-backend-nosuch.so",
       "/tmp/epcomm-nowhere/libepcomm-backend-nosuch.so: not found", "EPCOMM_PLUGIN_PATH"});
}

TEST(PluginLoader, MismatchedAbiIsRefused) {
  expectLoadError("badabi", withPath(EPCOMM_TEST_PLUGIN_DIR), ErrorCode::kInvalidUsage,
                  {"ABI version 99", "needs version 1", "libepcomm-backend-badabi.so"});
}

TEST(PluginLoader, ShortTableIsRefused) {
  expectLoadError("smalltable", withPath(EPCOMM_TEST_PLUGIN_DIR), ErrorCode::kInvalidUsage,
                  {"backend table of 8 bytes", "rebuild the plugin"});
}

TEST(PluginLoader, SearchGoesOnPastARefusedPlugin) {
  // The refused copy comes first; the build tree's real mpi plugin is found after it.
  const std::string dir = std::string(EPCOMM_TEST_PLUGIN_DIR) + "/shadow";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(std::string(EPCOMM_TEST_PLUGIN_DIR) + "/libepcomm-backend-badabi.so",
                             dir + "/libepcomm-backend-mpi.so",
                             std::filesystem::copy_options::overwrite_existing);
  const LoadedPlugin p = loadBackendPlugin("mpi", withPath(dir), 0);
  ASSERT_NE(p.table, nullptr);
  EXPECT_EQ(p.path.find(dir), std::string::npos) << p.path;
}

TEST(PluginLoader, LibraryWithoutTheSymbolIsRefused) {
  expectLoadError("nosymbol", withPath(EPCOMM_TEST_PLUGIN_DIR), ErrorCode::kInvalidUsage,
                  {"does not export epcommBackend_v1"});
}

TEST(PluginLoader, BadNamesAreRefused) {
  expectLoadError("../evil", Config::defaults(), ErrorCode::kInvalidArgument, {"not valid"});
}

TEST(PluginLoader, FindsTheMpiPluginInTheBuildTree) {
  const LoadedPlugin p = loadBackendPlugin("mpi", Config::defaults(), 0);
  ASSERT_NE(p.table, nullptr);
  EXPECT_STREQ(p.table->name, "mpi");
  EXPECT_EQ(p.table->abiVersion, EPCOMM_BACKEND_ABI_VERSION);
}

}  // namespace
}  // namespace epcomm
