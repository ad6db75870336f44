#pragma once
// The query service over gRPC (proto/query.proto): QueryServer serves a ReadModel; a remote
// ReadModel asks one. A gateway that runs beside no read model can read through
// connect_query_service() and cannot tell the difference (docs/architecture.md, "Projections";
// `imlog serve` does not use it today: its gateways read MySQL directly).
//
// Errors: a store failure is sent as UNAVAILABLE (retryable) or INTERNAL; the client turns
// UNAVAILABLE and DEADLINE_EXCEEDED back into retryable Errors naming the service address.
// Threading: both are thread-safe; the server runs on gRPC's own threads.

#include <chrono>
#include <memory>
#include <string>

#include "imlog/core/result.h"
#include "imlog/projections/query.h"

namespace imlog {

class QueryServer {
 public:
  // Serves `model` on `listen` ("127.0.0.1:0" picks a free port). The model must outlive it.
  static Result<std::unique_ptr<QueryServer>> start(ReadModel& model, const std::string& listen);
  ~QueryServer();
  [[nodiscard]] int port() const;
  void stop();

  struct State;  // private

 private:
  explicit QueryServer(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// A ReadModel answered by the query service at `target` ("host:port"); each call waits at most
// `deadline`.
std::unique_ptr<ReadModel> connect_query_service(const std::string& target,
                                                 std::chrono::milliseconds deadline = std::chrono::seconds(2));

}  // namespace imlog
