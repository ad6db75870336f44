#pragma once
// The load generator's scenarios (bench/README.md). Each runs on the calling thread plus the
// Workers it creates, prints its report, and returns the process exit code (0: every message
// sent was delivered, 2: some were not, 1: set-up failed).

#include <string>
#include <vector>

#include "harness.h"

namespace imlog::bench {

struct IdleOptions {
  size_t connections = 10000;
  size_t per_user = 1;
  double hold_s = 10;
  size_t parallel = 256;
  std::string prefix;
};
struct ChatOptions {
  size_t clients = 1000;
  double rate = 2000;
  size_t window = 4;
  double seconds = 10;
  double warmup = 2;
};
struct GroupOptions {
  size_t members = 1000;
  double posts_per_sec = 100;
  double seconds = 10;
  double warmup = 2;
};
struct RestOptions {
  size_t clients = 200;
  size_t history = 200;
  double seconds = 10;
};
struct ColdstartOptions {
  size_t messages = 1000000;
  std::string reuse;
  int restarts = 1;
  bool kill = false;  // end each start with SIGKILL, not SIGTERM: every restart is a recovery
};

int run_idle(const Common& c, const IdleOptions& o);
int run_chat(const Common& c, const ChatOptions& o);
int run_group(const Common& c, const GroupOptions& o);
int run_rest(const Common& c, const RestOptions& o);
int run_coldstart(const Common& c, const ColdstartOptions& o);
int run_replay(const std::vector<std::string>& args);

}  // namespace imlog::bench
