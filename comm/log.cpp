#include "comm/log.h"

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <memory>
#include <string>

namespace epcomm {
namespace {

std::string hostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

spdlog::level::level_enum parseLevel(std::string_view level) {
  if (level == "error") return spdlog::level::err;
  if (level == "info") return spdlog::level::info;
  if (level == "debug") return spdlog::level::debug;
  if (level == "trace") return spdlog::level::trace;
  return spdlog::level::warn;
}

void applyPattern(spdlog::logger& logger, int rank) {
  const std::string rankText = rank < 0 ? std::string("?") : fmt::to_string(rank);
  logger.set_pattern(fmt::format("[%Y-%m-%d %T.%e] [epcomm {}:{} rank {}] [%l] %v", hostName(),
                                 getpid(), rankText));
}

std::shared_ptr<spdlog::logger> makeLogger() {
  auto logger = std::make_shared<spdlog::logger>(
      "epcomm", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  // EPCOMM_LOG_LEVEL is applied by whoever reads the Config (every init path).
  logger->set_level(spdlog::level::warn);
  applyPattern(*logger, -1);
  return logger;
}

std::shared_ptr<spdlog::logger>& instance() {
  static std::shared_ptr<spdlog::logger> logger = makeLogger();
  return logger;
}

}  // namespace

spdlog::logger& log() {
  return *instance();
}

void setLogLevel(std::string_view level) {
  instance()->set_level(parseLevel(level));
}

void setLogRank(int rank) {
  applyPattern(*instance(), rank);
}

namespace {
thread_local BackendLogRewrite::Fn tRewrite = nullptr;
thread_local const void* tRewriteCtx = nullptr;
}  // namespace

BackendLogRewrite::BackendLogRewrite(Fn fn, const void* ctx)
    : previousFn_(tRewrite), previousCtx_(tRewriteCtx) {
  tRewrite = fn;
  tRewriteCtx = ctx;
}

BackendLogRewrite::~BackendLogRewrite() {
  tRewrite = previousFn_;
  tRewriteCtx = previousCtx_;
}

void logFromBackend(int level, const char* message) {
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::trace,
                                                          spdlog::level::debug, spdlog::level::info,
                                                          spdlog::level::warn, spdlog::level::err};
  const int index = level < 0 ? 0 : (level > 4 ? 4 : level);
  if (!log().should_log(kLevels[index])) return;
  const std::string text = message ? message : "";
  log().log(kLevels[index], "{}", tRewrite ? tRewrite(text, tRewriteCtx) : text);
}

}  // namespace epcomm
