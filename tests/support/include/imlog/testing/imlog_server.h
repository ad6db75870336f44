#pragma once
// A real `imlog serve` for the end-to-end tests: the built binary as a child process on a free
// loopback port, its data under `<dir>/data`, its config written from the test's YAML.
//
// Thread-compatible (one test thread drives it).

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "imlog/testing/client.h"
#include "imlog/testing/support.h"

namespace imlog::testing {

class ImlogServer {
 public:
  ImlogServer(std::string dir, std::string_view config_yaml);
  ~ImlogServer();  // SIGKILL if still running
  ImlogServer(const ImlogServer&) = delete;
  ImlogServer& operator=(const ImlogServer&) = delete;

  // Starts `imlog serve` and waits up to 60 s for /readyz; false if it did not become ready.
  [[nodiscard]] bool start();
  // Starts `imlog serve` with extra environment entries ("NAME=value") and returns at once.
  void spawn(const std::vector<std::string>& env = {});
  void kill9();
  // Sends `sig` to the running server (SIGSTOP and SIGCONT hold it still while a client writes).
  void signal(int sig);
  // SIGTERM, and the exit status as from waitpid (nullopt if it did not exit within 30 s).
  std::optional<int> terminate();

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const HttpClient& http() const { return http_; }
  [[nodiscard]] bool running() const { return proc_.has_value(); }
  [[nodiscard]] std::string data_dir() const { return dir_ + "/data"; }
  [[nodiscard]] const std::string& config_path() const { return config_; }
  // The JWT secret the server keeps in its data directory.
  [[nodiscard]] std::string secret() const;

 private:
  std::string dir_;
  std::string config_;
  int port_;
  HttpClient http_;
  std::optional<Subprocess> proc_;
};

// `s` as a JSON string literal, quotes and escapes included.
std::string json_quote(std::string_view s);

}  // namespace imlog::testing
