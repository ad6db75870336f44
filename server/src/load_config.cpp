// load_server_config: the file, then the defaults that ask the machine. Apart from
// server_config.cpp so that the pure YAML → ServerConfig reading links without the gateway.
#include "imlog/gateway/gateway.h"
#include "server_config.h"

namespace imlog {

ServerConfig load_server_config(const std::string& path, const std::string& data_dir_override) {
  ConfigSection root = path.empty() ? ConfigSection::parse("", "defaults") : ConfigSection::load_file(path);
  ServerConfig c = read_server_config(root, data_dir_override);
  if (c.gateway.gateway_id.empty()) c.gateway.gateway_id = default_gateway_id();
  return c;
}

void apply_command_line(ServerConfig& c, const CommandLine& flags) {
  if (!flags.roles.empty()) {
    if (auto p = roles_problem(flags.roles); !p.empty()) throw ConfigError("--roles: " + p);
    c.roles = flags.roles;
  }
  if (!flags.gateway_id.empty()) c.gateway.gateway_id = flags.gateway_id;
  if (!flags.listen.empty()) c.gateway.listen = flags.listen;
  if (!flags.ops_listen.empty()) c.ops_listen = flags.ops_listen;
  // The ops address is read by the gateway's parser: one notion of "host:port" for both.
  if (!c.ops_listen.empty()) {
    if (auto p = listen_problem(c.ops_listen); !p.empty()) {
      throw ConfigError((flags.ops_listen.empty() ? "config key `ops.listen`: " : "--ops-listen: ") + p);
    }
  }
  if (!has_role(c, "gateway")) return;
  if (auto p = listen_problem(c.gateway.listen); !p.empty()) {
    throw ConfigError((flags.listen.empty() ? "config key `gateway.listen`: " : "--listen: ") + p);
  }
}

}  // namespace imlog
