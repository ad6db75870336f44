// The config file: YAML text → ServerConfig (read_server_config). Every refusal must be a
// ConfigError naming the key at fault (config.h); any other exception escapes and is a finding.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "check.h"
#include "imlog/core/config.h"
#include "server_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    imlog::ConfigSection root = imlog::ConfigSection::parse(text, "fuzz.yaml");
    imlog::ServerConfig c = imlog::read_server_config(root, "");
    IMLOG_FUZZ_CHECK(!c.roles.empty() || text.find("roles") != std::string_view::npos);
    IMLOG_FUZZ_CHECK(!c.event_log.local.dir.empty() && !c.engine.state_dir.empty() && !c.model.dir.empty());
  } catch (const imlog::ConfigError& e) {
    IMLOG_FUZZ_CHECK(std::string_view(e.what()).find("fuzz.yaml") != std::string_view::npos ||
                     std::string_view(e.what()).find("config key") != std::string_view::npos);
  }
  return 0;
}
