#include "imlog/testing/imlog_server.h"

#include <signal.h>

#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fstream>

namespace imlog::testing {

using namespace std::chrono_literals;

ImlogServer::ImlogServer(std::string dir, std::string_view config_yaml)
    : dir_(std::move(dir)), config_(dir_ + "/imlog-test.yaml"), port_(free_port()), http_("127.0.0.1", port_) {
  std::ofstream(config_) << config_yaml;
}

ImlogServer::~ImlogServer() {
  if (proc_) proc_->kill();
}

void ImlogServer::spawn(const std::vector<std::string>& env) {
  proc_.emplace(Subprocess::start({(binary_dir() / "imlog").string(), "serve", "--data-dir", data_dir(), "--listen",
                                   fmt::format("127.0.0.1:{}", port_), "--config", config_},
                                  env));
}

bool ImlogServer::start() {
  spawn();
  return wait_until([&] { return http_.get("/readyz").status == 200; }, 60s);
}

void ImlogServer::signal(int sig) {
  if (proc_) proc_->signal(sig);
}

void ImlogServer::kill9() {
  if (proc_) proc_->kill();
  proc_.reset();
}

std::optional<int> ImlogServer::terminate() {
  if (!proc_) return std::nullopt;
  proc_->signal(SIGTERM);
  auto st = proc_->wait(30s);
  proc_.reset();
  return st;
}

std::string ImlogServer::secret() const {
  std::ifstream in(data_dir() + "/secret");
  std::string s;
  std::getline(in, s);
  return s;
}

std::string json_quote(std::string_view s) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace imlog::testing
