#include "imlog/core/redis.h"

#include <hiredis/hiredis.h>

namespace imlog {
namespace {

class RedisCategoryImpl final : public std::error_category {
 public:
  const char* name() const noexcept override { return "redis"; }
  std::string message(int c) const override {
    switch (static_cast<RedisErrc>(c)) {
      case RedisErrc::unavailable: return "Redis unavailable";
      case RedisErrc::command_failed: return "Redis command failed";
      case RedisErrc::bad_reply: return "unexpected Redis reply";
      case RedisErrc::bad_config: return "bad Redis configuration";
    }
    return "Redis error";
  }
};

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000), static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

}  // namespace

const std::error_category& redis_category() {
  static const RedisCategoryImpl c;
  return c;
}

void RedisReplyFree::operator()(redisReply* r) const { freeReplyObject(r); }
void RedisConnection::ContextFree::operator()(redisContext* c) const { redisFree(c); }

std::string_view reply_string(const redisReply* r) {
  return r && r->str ? std::string_view(r->str, r->len) : std::string_view();
}
bool reply_is_nil(const redisReply* r) { return !r || r->type == REDIS_REPLY_NIL; }
bool reply_is_array(const redisReply* r) { return r && r->type == REDIS_REPLY_ARRAY; }
size_t reply_size(const redisReply* r) { return reply_is_array(r) ? r->elements : 0; }
const redisReply* reply_at(const redisReply* r, size_t i) { return r->element[i]; }
int64_t reply_integer(const redisReply* r) { return r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0; }

RedisConnection::RedisConnection(const RedisEndpoint& endpoint) : config_(endpoint) {}
RedisConnection::~RedisConnection() = default;

std::string RedisConnection::endpoint() const { return config_.host + ":" + std::to_string(config_.port); }

bool RedisConnection::broken() const { return lost() || owed_ > 0; }
bool RedisConnection::lost() const { return failed_ || !ctx_ || ctx_->err != 0; }

Status RedisConnection::connect() {
  failed_ = false;
  owed_ = 0;
  ctx_.reset(redisConnectWithTimeout(config_.host.c_str(), config_.port, to_timeval(config_.connect_timeout)));
  if (!ctx_ || ctx_->err) {
    std::string why = ctx_ ? ctx_->errstr : "out of memory";
    ctx_.reset();
    return fail(RedisErrc::unavailable,
                "Redis " + endpoint() + " is unreachable: " + why + "; check that the server is up and the " +
                    "configured redis host and port point at it",
                true);
  }
  redisSetTimeout(ctx_.get(), to_timeval(config_.io_timeout));
  if (!config_.password.empty()) IMLOG_TRY(command({"AUTH", config_.password}, "authenticating"));
  if (config_.db != 0) IMLOG_TRY(command({"SELECT", std::to_string(config_.db)}, "selecting db"));
  return {};
}

void RedisConnection::append(const std::vector<std::string_view>& args) {
  argv_.clear();
  lens_.clear();
  for (auto a : args) {
    argv_.push_back(a.data());
    lens_.push_back(a.size());
  }
  redisAppendCommandArgv(ctx_.get(), static_cast<int>(args.size()), argv_.data(), lens_.data());
  ++owed_;
}

void RedisConnection::append_raw(std::string_view resp, size_t commands) {
  redisAppendFormattedCommand(ctx_.get(), resp.data(), resp.size());
  owed_ += commands;
}

Result<RedisReplyPtr> RedisConnection::read(std::string_view what) {
  void* r = nullptr;
  if (redisGetReply(ctx_.get(), &r) != REDIS_OK || r == nullptr) {
    failed_ = true;  // the pipeline's remaining replies are lost with the connection
    owed_ = 0;
    return fail(RedisErrc::unavailable,
                "Redis " + endpoint() + " connection lost while " + std::string(what) + ": " + ctx_->errstr, true);
  }
  if (owed_ > 0) --owed_;
  RedisReplyPtr reply(static_cast<redisReply*>(r));
  if (reply->type == REDIS_REPLY_ERROR) {
    return fail(RedisErrc::command_failed,
                "Redis " + endpoint() + ": " + std::string(what) + ": " + std::string(reply_string(reply.get())));
  }
  return reply;
}

Result<RedisReplyPtr> RedisConnection::command(const std::vector<std::string_view>& args, std::string_view what) {
  append(args);
  return read(what);
}

RedisPool::RedisPool(RedisEndpoint endpoint, size_t size) : endpoint_(std::move(endpoint)), size_(size ? size : 1) {}
RedisPool::~RedisPool() = default;

RedisPool::Lease::~Lease() {
  if (conn_) pool_->release(std::move(conn_));
}

Result<RedisPool::Lease> RedisPool::acquire() {
  std::unique_ptr<RedisConnection> conn;
  {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty() || lent_ < size_; });
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
    ++lent_;
  }
  if (!conn) conn = std::make_unique<RedisConnection>(endpoint_);
  if (conn->broken()) {
    if (auto s = conn->connect(); !s) {
      release(nullptr);
      return fail(s.error());
    }
  }
  return Lease(*this, std::move(conn));
}

void RedisPool::release(std::unique_ptr<RedisConnection> conn) {
  {
    std::lock_guard lock(mu_);
    --lent_;
    if (conn) idle_.push_back(std::move(conn));
  }
  cv_.notify_one();
}

}  // namespace imlog
