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

}  // namespace imlog
