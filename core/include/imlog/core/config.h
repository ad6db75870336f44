#pragma once
// Reading one YAML config with defaults and clear errors (docs/architecture.md, "Operations").
//
// Each component owns a plain <Comp>Config struct whose fields already hold their defaults. The
// code that knows the struct reads a section into it:
//
//   ConfigSection s = root.section("log");
//   s.read("level", cfg.level);      // absent: the default stays
//   s.finish();                      // an unknown key under `log` throws, naming it
//
// Every error is a ConfigError whose message names the full key path ("config key
// `kafka.brokers`: expected a string, got a map"). Exceptions are used here because config is read
// once at start-up (the one place imlog throws; elsewhere failures are Result values). Not
// thread-safe; use from main only.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace imlog {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConfigSection {
 public:
  // The whole document. An empty or missing document is an empty map: every default applies.
  static ConfigSection parse(std::string_view yaml_text, std::string source_name = "config");
  static ConfigSection load_file(const std::string& path);

  ConfigSection(ConfigSection&&) noexcept;
  ConfigSection& operator=(ConfigSection&&) noexcept;
  ~ConfigSection();

  // A nested map; an absent key gives an empty section (so its defaults apply).
  [[nodiscard]] ConfigSection section(std::string_view key);
  [[nodiscard]] bool has(std::string_view key) const;

  void read(std::string_view key, std::string& out);
  void read(std::string_view key, bool& out);
  void read(std::string_view key, int32_t& out);
  void read(std::string_view key, int64_t& out);
  void read(std::string_view key, uint64_t& out);
  void read(std::string_view key, double& out);
  void read(std::string_view key, std::vector<std::string>& out);
  // A map of plain values (librdkafka properties and the like).
  void read(std::string_view key, std::map<std::string, std::string>& out);
  // Durations are written "250ms", "5s", "2m", "1h" or a bare number of milliseconds.
  void read(std::string_view key, std::chrono::milliseconds& out);
  // Sizes are written "512", "64KiB", "16MiB", "1GiB".
  void read_size(std::string_view key, uint64_t& out);

  // Throws ConfigError naming every key of this section that no read() or section() asked for.
  void finish() const;

  // "kafka.brokers" for key "brokers" of section "kafka".
  [[nodiscard]] std::string path(std::string_view key) const;

  // Throws a ConfigError about `key` of this section: "config key `a.b`: <what>".
  [[noreturn]] void fail(std::string_view key, std::string_view what) const;

 private:
  struct State;
  explicit ConfigSection(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace imlog
