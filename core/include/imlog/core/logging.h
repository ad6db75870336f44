#pragma once
// One spdlog logger per component; counts go to metrics, not logs. setup_logging() is called once
// in main; logger("engine") may then be called from any thread and is cheap after the first call.

#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class formatter;
class logger;
}

namespace imlog {

struct LogConfig {
  // Minimum level: trace, debug, info, warn, error, critical, off. Default info.
  std::string level = "info";
  // "text" (human, one line per event) or "json" (one JSON object per line). Default text.
  std::string format = "text";
};

// Applies level and format to every logger, existing and future. Throws std::invalid_argument
// naming the bad value.
void setup_logging(const LogConfig& config);

// The formatter of `format` ("text" or "json"): what setup_logging() gives every logger. In JSON
// the message is escaped, so each line is one valid JSON object whatever the message holds.
std::unique_ptr<spdlog::formatter> log_formatter(const std::string& format);

// The logger of a component, created on first use with the current settings.
std::shared_ptr<spdlog::logger> logger(std::string_view component);

}  // namespace imlog
