// epcomm-topo: the machine (tree), the network interfaces with their locality and which one
// the library selects and why, the binding plan for N local ranks, and every knob with its
// value and source. Exit status: 0; 1 when the configuration is malformed or the interface
// selection matches nothing (the message says which setting and lists the interfaces); CLI11's
// own non-zero codes for bad options.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "comm/config.h"
#include "comm/error.h"
#include "comm/src/plugin_loader.h"
#include "ep/buffer.h"
#include "topology/cli/topo_report.h"

namespace {

// The launcher's ranks per host, when launched by one (Open MPI, torchrun), else 1.
int launcherLocalSize() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE"}) {
    const std::optional<std::string> v = epcomm::environmentValue(name);
    const std::optional<std::int64_t> n = v ? epcomm::parseInteger(*v) : std::nullopt;
    if (n && *n >= 1 && *n <= 1 << 16) return static_cast<int>(*n);
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "epcomm-topo: machine, network interfaces (and the one epcomm selects), the CPU binding "
      "plan, and the effective configuration"};
  bool json = false;
  bool envOnly = false;
  int ranks = launcherLocalSize();
  app.add_flag("--json", json, "one JSON object (keys machine, interfaces, selection, plan, env)");
  app.add_flag("--env", envOnly,
               "only the configuration: every knob, its value and its source (default, own "
               "name, or alias)");
  app.add_option("-n,--ranks", ranks, "local ranks to plan the CPU binding for")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    // Every layer's rows: ep's (resolving its config registers them), the backends' (from
    // their plugins); then the effective values of all of them.
    epcomm::registerBackendKnobs(epcomm::Config::fromEnvironment());
    epcomm::ep::BufferConfig::fromConfig(epcomm::Config::fromEnvironment());
    const epcomm::Config config = epcomm::Config::fromEnvironment();
    if (envOnly) {
      if (json) {
        std::cout << nlohmann::ordered_json{{"env", epcomm::topology::envJson(config)}}.dump(2)
                  << "\n";
      } else {
        std::cout << epcomm::topology::envText(config);
      }
      return 0;
    }
    const epcomm::topology::TopoReport report = epcomm::topology::gatherReport(config, ranks);
    if (json) {
      std::cout << epcomm::topology::reportJson(report).dump(2) << "\n";
    } else {
      std::cout << epcomm::topology::reportText(report);
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "epcomm-topo: " << e.what() << "\n";
    return 1;
  }
}
