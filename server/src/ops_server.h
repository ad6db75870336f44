#pragma once
// The ops listener of a process without the gateway role (docs/operations.md): GET /metrics (every
// figure of the process, imlog/core/metrics.h), /healthz (200 while the process runs) and /readyz
// (200, or 503 with why not). A gateway process serves the same three on its own port, through
// the gateway's router (gateway/src/api_ops.cpp); this is the same answer for the other roles.
//
// One thread, one connection at a time is enough for a scraper and a probe; each request has a
// 10 s deadline, so a stuck client cannot hold the listener. Lifecycle: start() binds and runs
// the thread, stop() (or the destructor) closes it. Threading: start/stop from one thread.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "imlog/core/result.h"

namespace imlog {

class OpsServer {
 public:
  // `not_ready`: empty when ready, else why not (called on the server's thread).
  OpsServer(std::string listen, std::function<std::string()> not_ready);
  ~OpsServer();
  // Binds `listen` ("host:port"); fails naming it.
  Status start();
  void stop();
  [[nodiscard]] uint16_t port() const;

  struct Impl;  // private

 private:
  std::unique_ptr<Impl> impl_;
};

// The ops address of a process that sets none (`ops.listen` / --ops-listen): a gateway process
// serves its ops endpoints on the gateway's port (empty here); otherwise 127.0.0.1 and a port per
// role, the first of engine 9101, projector 9102, router 9103, tasks 9104 it runs — so one of each
// role shares a host without a flag.
std::string default_ops_listen(const std::vector<std::string>& roles);

}  // namespace imlog
