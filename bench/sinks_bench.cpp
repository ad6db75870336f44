// imlog-bench-sinks: events/s that the MySQL and Redis projection sinks apply.
//
//   imlog-bench-sinks [--sink mysql|redis|both] [--events N] [--batch N] [--singles N]
//                     [--groups N] [--group-members N] [--users N] [--content-bytes N]
//                     [--mysql-host H --mysql-port P --mysql-user U --mysql-password W]
//                     [--mysql-database D] [--redis-host H --redis-port P] [--keep]
//
// Generates, in memory and before the clock starts, a valid log of `events` events over 4
// partitions: an epoch marker per partition, a GroupCreated per group (with `group-members`
// members), then MessageAppended events spread uniformly over the one-to-one and group
// conversations, each with the next seq of its conversation, `content-bytes` of text, a sender
// who is a participant, and a client_msg_id. The events are encoded with FlatBuffers and decoded
// (verified) once, as the projector would hand them over. The clock then covers only the sink:
// apply() of batches of `batch` events, each batch with its positions, into a fresh target (the
// database / key prefix is dropped first and, unless --keep, after).
//
// Servers: the flags, else IMLOG_MYSQL_* / IMLOG_REDIS_* (as scripts/test exports them), else
// 127.0.0.1:3306 / :6379.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "imlog/core/logging.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/mysql_model.h"
#include "imlog/projections/redis_model.h"
#include "imlog/schema/codec.h"

namespace {

using namespace imlog;
using Clock = std::chrono::steady_clock;

constexpr int32_t kPartitions = 4;
constexpr uint64_t kToken = 42;

struct GeneratedEvents {
  std::deque<std::string> bytes;
  std::vector<EventBatch::Item> items;  // in log order per partition
  std::vector<uint64_t> tokens;
};

struct Shape {
  int64_t events = 1'000'000;
  int singles = 2000;
  int groups = 200;
  int group_members = 20;
  int users = 10'000;
  int content_bytes = 100;
};

GeneratedEvents generate(const Shape& shape) {
  GeneratedEvents g;
  std::mt19937_64 rng(7);
  std::vector<int64_t> next_offset(kPartitions, 0);
  int64_t ts = 1'700'000'000'000;
  uint64_t event_id = 1ull << 40;
  auto add = [&](fb::EventEnvelopeT& e, int32_t partition) {
    e.epoch = kToken;
    e.event_id = ++event_id;
    e.timestamp_ms = ++ts;
    g.bytes.push_back(encode_event(e));
    auto view = read_event(g.bytes.back());
    if (!view) {
      std::fprintf(stderr, "generated an invalid event: %s\n", view.error().to_string().c_str());
      std::exit(1);
    }
    g.items.push_back({partition, next_offset[static_cast<size_t>(partition)]++, *view});
  };
  auto partition_of = [](const std::string& stream) {
    return static_cast<int32_t>(std::hash<std::string>{}(stream) % kPartitions);
  };
  for (int32_t p = 0; p < kPartitions; ++p) {
    fb::EventEnvelopeT e;
    e.event.Set(fb::EpochStartedT{{}, kToken, p, "bench"});
    add(e, p);
  }
  struct Conv {
    std::string stream;
    int32_t partition = 0;
    uint64_t seq = 0;
    std::vector<uint64_t> participants;
  };
  std::vector<Conv> convs;
  std::uniform_int_distribution<uint64_t> user(1, static_cast<uint64_t>(shape.users));
  for (int i = 0; i < shape.singles; ++i) {
    uint64_t a = user(rng), b = user(rng);
    while (b == a) b = user(rng);
    Conv c;
    c.stream = single_stream(a, b);
    c.participants = {a, b};
    convs.push_back(std::move(c));
  }
  for (int i = 0; i < shape.groups; ++i) {
    Conv c;
    c.stream = group_stream(static_cast<uint64_t>(i + 1));
    for (int m = 0; m < shape.group_members; ++m) c.participants.push_back(user(rng));
    convs.push_back(std::move(c));
  }
  for (auto& c : convs) c.partition = partition_of(c.stream);
  for (size_t i = static_cast<size_t>(shape.singles); i < convs.size(); ++i) {
    auto& c = convs[i];
    fb::EventEnvelopeT e;
    e.stream = c.stream;
    e.seq = ++c.seq;
    e.actor = c.participants[0];
    fb::GroupCreatedT gc;
    gc.group_id = static_cast<uint64_t>(i - static_cast<size_t>(shape.singles) + 1);
    gc.owner = c.participants[0];
    gc.name = "group " + std::to_string(gc.group_id);
    gc.members.assign(c.participants.begin() + 1, c.participants.end());
    e.event.Set(std::move(gc));
    add(e, c.partition);
  }
  std::string text(static_cast<size_t>(shape.content_bytes), 'x');
  std::uniform_int_distribution<size_t> pick_conv(0, convs.size() - 1);
  int64_t messages = shape.events - static_cast<int64_t>(g.items.size());
  for (int64_t i = 0; i < messages; ++i) {
    auto& c = convs[pick_conv(rng)];
    fb::EventEnvelopeT e;
    e.stream = c.stream;
    e.seq = ++c.seq;
    e.actor = c.participants[rng() % c.participants.size()];
    e.client_msg_id = "m" + std::to_string(i);
    std::string content = "message " + std::to_string(i) + " ";
    content += text.substr(0, text.size() > content.size() ? text.size() - content.size() : 0);
    e.event.Set(fb::MessageAppendedT{{}, fb::MessageType::Text, std::move(content)});
    add(e, c.partition);
  }
  return g;
}

struct Outcome {
  double seconds = 0;
  bool ok = true;
};

Outcome run(ProjectionSink& sink, const GeneratedEvents& g, size_t batch) {
  std::vector<int64_t> next(kPartitions, 0);
  auto start = Clock::now();
  auto last_report = start;
  for (size_t i = 0; i < g.items.size(); i += batch) {
    EventBatch b;
    size_t end = std::min(g.items.size(), i + batch);
    b.events.assign(g.items.begin() + static_cast<ptrdiff_t>(i), g.items.begin() + static_cast<ptrdiff_t>(end));
    for (size_t j = i; j < end; ++j) next[static_cast<size_t>(g.items[j].partition)] = g.items[j].offset + 1;
    for (int32_t p = 0; p < kPartitions; ++p) {
      if (next[static_cast<size_t>(p)] > 0) b.positions.push_back({p, next[static_cast<size_t>(p)], kToken});
    }
    auto r = sink.apply(b);
    if (!r) {
      std::fprintf(stderr, "%s: apply failed at event %zu: %s\n", std::string(sink.name()).c_str(), i,
                   r.error().to_string().c_str());
      return {0, false};
    }
    auto now = Clock::now();
    if (now - last_report > std::chrono::seconds(5)) {
      double s = std::chrono::duration<double>(now - start).count();
      std::fprintf(stderr, "  %s: %zu / %zu events, %.0f/s\n", std::string(sink.name()).c_str(), end, g.items.size(),
                   static_cast<double>(end) / s);
      last_report = now;
    }
  }
  return {std::chrono::duration<double>(Clock::now() - start).count(), true};
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  Shape shape;
  std::string which = "both";
  size_t batch = 4096;
  bool keep = false;
  MysqlConfig mc;
  mc.host = env_or("IMLOG_MYSQL_HOST", "127.0.0.1");
  mc.port = std::atoi(env_or("IMLOG_MYSQL_PORT", "3306").c_str());
  mc.user = env_or("IMLOG_MYSQL_USER", "root");
  mc.password = env_or("IMLOG_MYSQL_PASSWORD", "");
  mc.database = "imlog_bench_sinks";
  RedisConfig rc;
  rc.host = env_or("IMLOG_REDIS_HOST", "127.0.0.1");
  rc.port = std::atoi(env_or("IMLOG_REDIS_PORT", "6379").c_str());
  rc.key_prefix = "imlog-bench:";

  CLI::App app{"imlog projection sink benchmark"};
  app.add_option("--sink", which, "mysql, redis or both")->check(CLI::IsMember({"mysql", "redis", "both"}));
  app.add_option("--events", shape.events, "events in the generated log");
  app.add_option("--batch", batch, "events per apply()");
  app.add_option("--singles", shape.singles, "one-to-one conversations");
  app.add_option("--groups", shape.groups, "group conversations");
  app.add_option("--group-members", shape.group_members, "members per group");
  app.add_option("--users", shape.users, "users the participants are drawn from");
  app.add_option("--content-bytes", shape.content_bytes, "bytes of content per message");
  app.add_option("--mysql-host", mc.host);
  app.add_option("--mysql-port", mc.port);
  app.add_option("--mysql-user", mc.user);
  app.add_option("--mysql-password", mc.password);
  app.add_option("--mysql-database", mc.database);
  app.add_option("--redis-host", rc.host);
  app.add_option("--redis-port", rc.port);
  app.add_option("--redis-prefix", rc.key_prefix);
  app.add_flag("--keep", keep, "keep the built models (default: drop them)");
  CLI11_PARSE(app, argc, argv);
  setup_logging(LogConfig{"warn", "text"});
  if (batch == 0 || shape.singles + shape.groups <= 0 || shape.users < 2 || shape.group_members < 1) {
    std::fprintf(stderr, "--batch, --users, --group-members and the conversations must be positive\n");
    return 2;
  }

  auto gen_start = Clock::now();
  GeneratedEvents g = generate(shape);
  std::printf("generated %zu events (%d one-to-one, %d groups of %d) in %.1f s\n", g.items.size(), shape.singles,
              shape.groups, shape.group_members, std::chrono::duration<double>(Clock::now() - gen_start).count());

  int status = 0;
  auto bench = [&](const char* name, ProjectionSink& sink, auto& model) {
    if (auto d = model.drop(); !d) {
      std::fprintf(stderr, "%s: drop failed: %s\n", name, d.error().to_string().c_str());
      status = 1;
      return;
    }
    Outcome o = run(sink, g, batch);
    if (!o.ok) {
      status = 1;
      return;
    }
    double rate = static_cast<double>(g.items.size()) / o.seconds;
    std::printf("%-6s batch %5zu  %9zu events  %7.1f s  %10.0f events/s\n", name, batch, g.items.size(), o.seconds,
                rate);
    std::printf("RESULT {\"bench\":\"sinks\",\"sink\":\"%s\",\"events\":%zu,\"batch\":%zu,\"singles\":%d,\"groups\":%d,"
                "\"group_members\":%d,\"content_bytes\":%d,\"seconds\":%.3f,\"events_per_s\":%.0f}\n",
                name, g.items.size(), batch, shape.singles, shape.groups, shape.group_members, shape.content_bytes,
                o.seconds, rate);
    std::fflush(stdout);
    if (!keep) (void)model.drop();
  };
  if (which == "redis" || which == "both") {
    auto m = open_redis_model(rc);
    if (!m) {
      std::fprintf(stderr, "%s\n", m.error().to_string().c_str());
      return 1;
    }
    bench("redis", **m, **m);
  }
  if (which == "mysql" || which == "both") {
    auto m = open_mysql_model(mc);
    if (!m) {
      std::fprintf(stderr, "%s\n", m.error().to_string().c_str());
      return 1;
    }
    bench("mysql", **m, **m);
  }
  return status;
}
