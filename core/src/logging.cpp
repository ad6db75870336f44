#include "imlog/core/logging.h"

#include <mutex>
#include <stdexcept>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace imlog {
namespace {

std::mutex g_mu;
LogConfig g_config;

const char* pattern_for(const std::string& format) {
  // Text: one line per event, component and thread id in every line so interleaved roles read apart.
  if (format == "text") return "%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v";
  if (format == "json")
    return R"({"ts":"%Y-%m-%dT%H:%M:%S.%e","level":"%l","component":"%n","msg":"%v"})";
  throw std::invalid_argument("log format `" + format + "` is unknown: use `text` or `json`");
}

spdlog::level::level_enum level_for(const std::string& level) {
  auto l = spdlog::level::from_str(level);
  // from_str maps unknown names to `off`; only accept `off` when it was asked for.
  if (l == spdlog::level::off && level != "off") {
    throw std::invalid_argument("log level `" + level +
                                "` is unknown: use trace, debug, info, warn, error, critical or off");
  }
  return l;
}

}  // namespace

void setup_logging(const LogConfig& config) {
  auto level = level_for(config.level);
  auto pattern = pattern_for(config.format);
  std::lock_guard lock(g_mu);
  g_config = config;
  spdlog::set_level(level);
  spdlog::set_pattern(pattern);
}

std::shared_ptr<spdlog::logger> logger(std::string_view component) {
  std::string name(component);
  if (auto l = spdlog::get(name)) return l;
  std::lock_guard lock(g_mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(level_for(g_config.level));
  l->set_pattern(pattern_for(g_config.format));
  return l;
}

}  // namespace imlog
