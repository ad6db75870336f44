// imlog: one binary for every role (docs/architecture.md, "Two ways to run", "Operations").
//
//   imlog serve [--config FILE] [--data-dir DIR] [--roles engine,...] [--listen HOST:PORT]
//               [--gateway-id ID] [--ops-listen HOST:PORT]           run a node
//   imlog init  [--config FILE] [--gateway-id ID ...]                  create topics, migrate MySQL;
//                                                                      idempotent
//   imlog dlq list|show P:O|replay P:O|all [--config FILE]              inspect and re-drive im.dlq
//   imlog version | imlog --version
//
// One config file serves every process of a deployment; --data-dir, --roles, --listen,
// --gateway-id and --ops-listen are the per-process overrides (docs/deploy.md).

#include <signal.h>

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "imlog/core/config.h"
#include "imlog/core/logging.h"
#include "imlog/projections/mysql_model.h"
#include "dlq.h"
#include "node.h"
#include "server_config.h"
#include "topics.h"

namespace {

int fail_start(const std::string& what) {
  std::fprintf(stderr, "imlog: %s\n", what.c_str());
  return 1;
}

// Blocks SIGTERM/SIGINT in every thread (call before any thread starts) and waits for one,
// polling the node for a fatal failure meanwhile.
int wait_for_signal(imlog::Node& node, sigset_t& set) {
  timespec tick{0, 200'000'000};
  while (true) {
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      imlog::logger("server")->info("signal {}: draining and stopping", sig);
      return 0;
    }
    if (auto f = node.failure(); !f.empty()) {
      imlog::logger("server")->critical("stopping: {}", f);
      return 1;
    }
  }
}

constexpr const char* kVersion = "imlog " IMLOG_VERSION;

// `imlog init`: the topics, then the MySQL migrations when a `mysql:` section is present. Says
// what it did; safe to run again.
int run_init(const imlog::ServerConfig& config, const std::vector<std::string>& gateways) {
  auto log = imlog::open_event_log(config.event_log);
  if (!log) return fail_start(log.error().to_string());
  std::vector<std::string> topics;
  if (auto s = imlog::create_topics(**log, config.event_log, gateways, &topics); !s) {
    return fail_start(s.error().to_string());
  }
  // A topic made earlier (by hand, or by an older imlog) may lack the settings that keep it.
  if (auto s = imlog::verify_topic_settings(**log, config.event_log); !s) return fail_start(s.error().to_string());
  for (const auto& t : topics) std::cout << "imlog init: topic ready: " << t << "\n";
  std::cout << "imlog init: topics ready on " << (*log)->describe() << "\n";
  if (config.mysql) {
    if (auto s = imlog::migrate_mysql(*config.mysql); !s) return fail_start(s.error().to_string());
    std::cout << "imlog init: MySQL database `" << config.mysql->database << "` on " << config.mysql->host << ":"
              << config.mysql->port << " migrated\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog: an event-sourced instant-messaging backend"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersion);
  std::string config_path, data_dir;
  imlog::CommandLine flags;
  std::vector<std::string> init_gateways;

  auto* serve = app.add_subcommand("serve", "run a node (every role by default)");
  serve->add_option("--config", config_path, "YAML config file (default: built-in defaults)");
  serve->add_option("--data-dir", data_dir, "root of local data (default ./data)");
  serve->add_option("--roles", flags.roles, "roles to run: all, gateway, engine, projector, router, tasks")
      ->delimiter(',');
  serve->add_option("--listen", flags.listen, "HTTP/WebSocket address of the gateway (overrides gateway.listen; "
                                        "default 127.0.0.1:8080)");
  serve->add_option("--gateway-id", flags.gateway_id, "this gateway's id (overrides gateway.gateway_id): it reads "
                                                "im.deliver.<id>; unique per gateway process");
  serve->add_option("--ops-listen", flags.ops_listen,
                    "address of /metrics, /healthz and /readyz (overrides ops.listen; default: the gateway's "
                    "port in a gateway process, else 127.0.0.1:9101 engine, 9102 projector, 9103 router, 9104 tasks)");

  auto* init = app.add_subcommand("init", "create the topics of the configured log and run the MySQL migrations; "
                                          "idempotent");
  init->add_option("--config", config_path, "YAML config file");
  init->add_option("--data-dir", data_dir, "root of local data (default ./data)");
  init->add_option("--gateway-id", init_gateways, "also create the delivery topic im.deliver.<id> of this gateway "
                                                  "(repeatable; a gateway creates its own on a real Kafka)");

  auto* dlq = app.add_subcommand("dlq", "inspect and re-drive the fan-out tasks the workers gave up on (im.dlq)");
  dlq->require_subcommand(1);
  dlq->add_option("--config", config_path, "YAML config file");
  dlq->add_option("--data-dir", data_dir, "root of local data (default ./data): the embedded log's");
  imlog::DlqCommand dlq_command;
  dlq->add_subcommand("list", "one line per dead letter: PARTITION:OFFSET, when, source, attempts, trace id, reason");
  dlq->add_subcommand("show", "one dead letter as JSON, its task decoded")
      ->add_option("where", dlq_command.which, "PARTITION:OFFSET in im.dlq, as `imlog dlq list` prints it")
      ->required();
  dlq->add_subcommand("replay", "append the original task again to its topic (im.tasks); the dead letter stays")
      ->add_option("where", dlq_command.which, "PARTITION:OFFSET in im.dlq, or `all`")
      ->required();

  app.add_subcommand("version", "print the version");
  CLI11_PARSE(app, argc, argv);

  if (app.got_subcommand("version")) {
    std::cout << kVersion << "\n";
    return 0;
  }

  // Signals go to the waiting main thread only: block them before any thread starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  // Every argument is checked here, before the node opens anything or starts a role.
  imlog::ServerConfig config;
  try {
    config = imlog::load_server_config(config_path, data_dir);
    if (app.got_subcommand("serve")) imlog::apply_command_line(config, flags);
    imlog::setup_logging(config.log);
  } catch (const std::exception& e) {
    return fail_start(e.what());
  }

  if (app.got_subcommand("init")) return run_init(config, init_gateways);
  if (app.got_subcommand("dlq")) {
    dlq_command.action = dlq->get_subcommands().front()->get_name();
    return imlog::run_dlq(config, dlq_command, std::cout, std::cerr);
  }

  imlog::Node node(config);
  if (auto s = node.start(); !s) return fail_start(s.error().to_string());
  int rc = wait_for_signal(node, set);
  node.stop();
  imlog::logger("server")->info("stopped");
  return rc;
}
