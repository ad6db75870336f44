#pragma once
// The one hiredis wrapper (target imlog::redis), used by the Redis read model (projections) and the
// Redis session registry and login throttle (tasks): one connection, pipelining (append N commands,
// then read N replies), errors as values, and a pool that reconnects a broken connection on its
// next use.
//
// Threading: a RedisConnection belongs to one thread at a time; RedisPool is thread-safe and lends
// each connection to one caller until the lease ends.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "imlog/core/result.h"

struct redisContext;
struct redisReply;

namespace imlog {

enum class RedisErrc {
  unavailable = 1,  // cannot connect, or the connection broke (retryable)
  command_failed,   // the server answered an error
  bad_reply,        // a reply of an unexpected shape
  bad_config,       // a config field is unusable
};
const std::error_category& redis_category();
inline std::error_code make_error_code(RedisErrc e) { return {static_cast<int>(e), redis_category()}; }

}  // namespace imlog

template <>
struct std::is_error_code_enum<imlog::RedisErrc> : std::true_type {};

namespace imlog {

struct RedisEndpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string password;
  int db = 0;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds io_timeout{5000};
};

struct RedisReplyFree {
  void operator()(redisReply* r) const;
};
using RedisReplyPtr = std::unique_ptr<redisReply, RedisReplyFree>;

// A reply's string ("" when it has none).
std::string_view reply_string(const redisReply* r);
// A reply's type tests and children, so callers need not include hiredis.
bool reply_is_nil(const redisReply* r);
bool reply_is_array(const redisReply* r);
size_t reply_size(const redisReply* r);
const redisReply* reply_at(const redisReply* r, size_t i);
int64_t reply_integer(const redisReply* r);

class RedisConnection {
 public:
  explicit RedisConnection(const RedisEndpoint& endpoint);
  ~RedisConnection();
  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects (again), authenticates and selects the database. Unreachable: unavailable, retryable.
  Status connect();
  // Lost, or still owing replies of appended commands (a caller stopped reading after an error
  // reply): either way not fit for the next caller, who would read someone else's replies. The
  // pool reconnects a broken connection before lending it again.
  [[nodiscard]] bool broken() const;
  // The connection itself is gone (not merely owing replies): reconnect before the next command.
  [[nodiscard]] bool lost() const;

  // Queues a command; nothing is sent until read().
  void append(const std::vector<std::string_view>& args);
  // Queues `commands` commands already written in the Redis protocol (RESP), as one buffer.
  void append_raw(std::string_view resp, size_t commands);
  // The next reply of the pipeline. A lost connection is unavailable (retryable) and marks the
  // connection broken; an error reply is command_failed (the replies after it are still owed).
  Result<RedisReplyPtr> read(std::string_view what);
  Result<RedisReplyPtr> command(const std::vector<std::string_view>& args, std::string_view what);

  [[nodiscard]] std::string endpoint() const;

 private:
  struct ContextFree {
    void operator()(redisContext* c) const;
  };
  const RedisEndpoint& config_;
  std::unique_ptr<redisContext, ContextFree> ctx_;
  bool failed_ = false;
  size_t owed_ = 0;  // replies of appended commands not read yet
  std::vector<const char*> argv_;
  std::vector<size_t> lens_;
};

// At most `size` connections, created on demand and lent one caller at a time.
class RedisPool {
 public:
  RedisPool(RedisEndpoint endpoint, size_t size);
  ~RedisPool();

  class Lease {
   public:
    Lease(RedisPool& pool, std::unique_ptr<RedisConnection> conn) : pool_(&pool), conn_(std::move(conn)) {}
    Lease(Lease&& o) noexcept = default;
    ~Lease();
    RedisConnection* operator->() { return conn_.get(); }
    RedisConnection& operator*() { return *conn_; }

   private:
    RedisPool* pool_;
    std::unique_ptr<RedisConnection> conn_;
  };

  // A connected connection (reconnecting a broken one), or unavailable.
  Result<Lease> acquire();
  [[nodiscard]] const RedisEndpoint& endpoint() const { return endpoint_; }

 private:
  void release(std::unique_ptr<RedisConnection> conn);
  RedisEndpoint endpoint_;
  size_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<RedisConnection>> idle_;
  size_t lent_ = 0;
};

}  // namespace imlog
