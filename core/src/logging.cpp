#include "imlog/core/logging.h"

#include <mutex>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace imlog {
namespace {

std::mutex g_mu;
LogConfig g_config;

// `%J`: the message as the inside of a JSON string. Error texts carry quotes, backslashes and
// newlines (a peer's input, a SQL error), and one of them raw between quotes breaks the line for
// every log shipper.
class JsonMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    json_escape(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  [[nodiscard]] std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessage>();
  }

 private:
  static void json_escape(std::string_view s, spdlog::memory_buf_t& dest) {
    for (char c : s) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            fmt::format_to(std::back_inserter(dest), "\\u{:04x}", static_cast<unsigned>(c));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
};

const char* pattern_for(const std::string& format) {
  // Text: one line per event, component and thread id in every line so interleaved roles read apart.
  if (format == "text") return "%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v";
  // Level and component names are ours (no character to escape); the message is escaped (%J).
  if (format == "json")
    return R"({"ts":"%Y-%m-%dT%H:%M:%S.%e","level":"%l","component":"%n","msg":"%J"})";
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

std::unique_ptr<spdlog::formatter> log_formatter(const std::string& format) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<JsonMessage>('J');
  f->set_pattern(pattern_for(format));
  return f;
}

void setup_logging(const LogConfig& config) {
  auto level = level_for(config.level);
  auto formatter = log_formatter(config.format);
  std::lock_guard lock(g_mu);
  g_config = config;
  spdlog::set_level(level);
  spdlog::set_formatter(std::move(formatter));
}

std::shared_ptr<spdlog::logger> logger(std::string_view component) {
  std::string name(component);
  if (auto l = spdlog::get(name)) return l;
  std::lock_guard lock(g_mu);
  if (auto l = spdlog::get(name)) return l;
  auto l = spdlog::stderr_color_mt(name);
  l->set_level(level_for(g_config.level));
  l->set_formatter(log_formatter(g_config.format));
  return l;
}

}  // namespace imlog
