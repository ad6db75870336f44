// imlog-bench-load: the load generator of issue 8 (bench/README.md lists every scenario command).
// It speaks the wire contract (docs/api) over many connections per thread, from several loopback
// source addresses, against an `imlog serve` it starts (low password-hash cost, no per-connection
// send limit) or one given with --port (and --server-pid for its RSS and CPU). Latency is from a
// send timestamp in the message content (steady clock µs) to its receipt. Every scenario prints a
// table and one `RESULT {json}` line, with the server's CPU and the generator's own, so one can
// tell which of the two was the limit.

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "harness.h"
#include "scenarios.h"

using namespace imlog::bench;

namespace {

void add_common(CLI::App* app, Common& c) {
  app->add_option("--port", c.port, "an imlog already listening on 127.0.0.1:PORT (default: start one)");
  app->add_option("--server-pid", c.server_pid, "with --port: the server's pid, for its RSS and CPU");
  app->add_option("--sources", c.sources, "client source addresses 127.0.0.1..N (default 8)");
  app->add_option("--threads", c.threads, "load generator I/O threads (default 1)");
  app->add_option("--config", c.config, "server config file to start it with (default: the bench config)");
  app->add_option("--data-dir", c.data_dir, "the started server's directory, kept (default: a temp dir, removed)");
  app->add_option("--server-bin", c.server_bin,
                  "the imlog executable to start (default: the one built beside this; another build to compare)");
  app->add_option("--http-parallel", c.http_parallel, "keep-alive HTTP connections for set-up (default 64)");
  app->add_option("--subprotocol", c.subprotocol,
                  "WebSocket subprotocol: imlog.v1.json (JSON text, the default) or imlog.v1 (binary FlatBuffers)")
      ->check(CLI::IsMember({"imlog.v1.json", "imlog.v1"}));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog load generator (bench/README.md)"};
  app.require_subcommand(1);
  Common common;
  IdleOptions idle;
  ChatOptions chat;
  GroupOptions group;
  RestOptions rest;
  ColdstartOptions cold;

  auto* idle_cmd = app.add_subcommand("idle", "N authenticated WebSockets held; server RSS per connection");
  add_common(idle_cmd, common);
  idle_cmd->add_option("--connections", idle.connections, "connections (default 10000)");
  idle_cmd->add_option("--per-user", idle.per_user, "connections per user (default 1)");
  idle_cmd->add_option("--hold", idle.hold_s, "seconds to hold them before the last RSS reading (default 10)");
  idle_cmd->add_option("--parallel", idle.parallel, "handshakes in flight (default 256)");
  idle_cmd->add_option("--prefix", idle.prefix, "user name prefix (distinct per process against one server)");

  auto* chat_cmd = app.add_subcommand("chat", "one-to-one chat at a fixed rate, or at saturation (--rate 0)");
  add_common(chat_cmd, common);
  chat_cmd->add_option("--clients", chat.clients, "connected clients, paired 2k<->2k+1 (default 1000)");
  chat_cmd->add_option("--rate", chat.rate, "messages/s offered in all; 0 = saturation (default 2000)");
  chat_cmd->add_option("--window", chat.window, "at saturation: unacknowledged sends per client (default 4)");
  chat_cmd->add_option("--seconds", chat.seconds, "measured seconds (default 10)");
  chat_cmd->add_option("--warmup", chat.warmup, "seconds sent before measuring (default 2)");

  auto* group_cmd = app.add_subcommand("group", "one group, every member online; fan-out and latency to the last member");
  add_common(group_cmd, common);
  group_cmd->add_option("--members", group.members, "members, all connected (default 1000)");
  group_cmd->add_option("--posts-per-sec", group.posts_per_sec, "posts/s, by members in turn (default 100)");
  group_cmd->add_option("--seconds", group.seconds, "measured seconds (default 10)");
  group_cmd->add_option("--warmup", group.warmup, "seconds posted before measuring (default 2)");

  auto* rest_cmd = app.add_subcommand("rest", "REST reads (history pages, conversation list) from concurrent clients");
  add_common(rest_cmd, common);
  rest_cmd->add_option("--clients", rest.clients, "concurrent clients, each a user (default 200)");
  rest_cmd->add_option("--history", rest.history, "messages in each one-to-one conversation (default 200)");
  rest_cmd->add_option("--seconds", rest.seconds, "measured seconds (default 10)");

  auto* cold_cmd = app.add_subcommand("coldstart", "start to /readyz and to the first delivered message, on a log of N messages");
  add_common(cold_cmd, common);
  cold_cmd->add_option("--messages", cold.messages, "messages in the generated log (default 1000000)");
  cold_cmd->add_option("--reuse", cold.reuse, "a data dir made by an earlier run (skips generating)");
  cold_cmd->add_option("--restarts", cold.restarts, "restarts after the first start (default 1)");
  cold_cmd->add_flag("--kill", cold.kill, "end each start with SIGKILL instead of SIGTERM (restarts recover from a crash)");

  auto* replay_cmd = app.add_subcommand("replay", "the RocksDB model's replay: runs imlog-bench-replay with the rest of the line");
  replay_cmd->allow_extras();

  CLI11_PARSE(app, argc, argv);
  raise_fd_limit();
  int rc = 0;
  if (*idle_cmd) rc = run_idle(common, idle);
  if (*chat_cmd) rc = run_chat(common, chat);
  if (*group_cmd) rc = run_group(common, group);
  if (*rest_cmd) rc = run_rest(common, rest);
  if (*cold_cmd) rc = run_coldstart(common, cold);
  if (*replay_cmd) rc = run_replay(replay_cmd->remaining());
  std::fflush(stdout);
  // Thousands of sockets close with the process; their orderly teardown is not measured.
  std::_Exit(rc);
}
