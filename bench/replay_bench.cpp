// imlog-bench-replay: how fast the RocksDB read model is rebuilt from the embedded log (the
// replay target of docs/architecture.md, "The numbers it is built for": 300,000 events/s).
//
//   imlog-bench-replay [--dir DIR] [--messages N] [--users N] [--groups N] [--partitions N]
//                      [--generate-only] [--reuse] [--batch N] [--live]
//
// 1. Generates, unless --reuse finds one, an event log under DIR/log (the layout of a data dir,
//    so `replay --data-dir DIR --projection rocksdb` runs on it too): registrations, groups, and
//    N messages — 3 to 12 words drawn from a 5,000-word vocabulary with a Zipf-like skew, 5% of
//    them Chinese — 70% in one-to-one conversations, 25% in groups, 5% in world, with recalls
//    (1%) and read markers (10%) mixed in. Events are written as a sequencer writes them (epoch
//    markers, dense seqs, time-ordered ids) by tests/support's EventLogBuilder.
// 2. Times a rebuild of the RocksDB model into a fresh DIR/model.bench (no WAL, as replay does),
//    through the Projector — the code path of `replay` — including the final flush.
//    --live also builds DIR/model as the server's projector would (WAL on), for replay --verify.
// 3. --search N: N message searches on the rebuilt model through QueryService (history rule,
//    snippets), as GET /api/v1/search/messages runs them: a random user, a query taken from a
//    message of a random conversation of theirs (one or two of its words, or two adjacent Chinese
//    characters), 20 results a page; prints p50/p99/max latency and the results per query.
//
// Prints a human line and one "RESULT {json}" line.

#include <chrono>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <random>

#include <CLI/CLI.hpp>

#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/query.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/testing/event_log_builder.h"

namespace {

using namespace imlog;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string dir = "/tmp/imlog-bench-replay";
  uint64_t messages = 1'000'000;
  uint64_t users = 10'000;
  uint64_t groups = 200;
  int32_t partitions = 4;
  bool generate_only = false;
  bool reuse = false;
  uint64_t batch = 65536;  // replay's default
  bool live = false;
  uint64_t search = 0;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Pseudo-words: consonant-vowel syllables, so tokens look like words and repeat like words.
std::vector<std::string> vocabulary(size_t n, std::mt19937_64& rng) {
  const char* c = "bcdfghjklmnprstvwz";
  const char* v = "aeiou";
  std::vector<std::string> words;
  for (size_t i = 0; i < n; ++i) {
    std::string w;
    size_t syllables = 1 + rng() % 3;
    for (size_t s = 0; s < syllables; ++s) {
      w += c[rng() % 18];
      w += v[rng() % 5];
    }
    words.push_back(std::move(w));
  }
  return words;
}

int generate(const Options& o, EventLog& log) {
  std::mt19937_64 rng(42);
  auto b = testing::EventLogBuilder::open(log, o.partitions);
  if (!b) {
    std::fprintf(stderr, "opening the log: %s\n", b.error().to_string().c_str());
    return 1;
  }
  auto& builder = **b;
  auto start = Clock::now();
  std::vector<uint64_t> users;
  for (uint64_t i = 0; i < o.users; ++i) users.push_back(builder.register_user("user" + std::to_string(i)));
  for (uint64_t g = 1; g <= o.groups; ++g) {
    std::vector<uint64_t> members;
    for (int m = 0; m < 50; ++m) members.push_back(users[rng() % users.size()]);
    builder.create_group(g, users[rng() % users.size()], members);
  }
  const auto words = vocabulary(5000, rng);
  const std::vector<std::string> chinese = {"你好", "今天", "天气", "很好", "我们", "一起", "吃饭", "明天", "见面", "谢谢"};
  // Zipf-like: index = floor(n * u^3) puts most draws on the first words.
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto word = [&] {
    double u = unit(rng);
    return words[static_cast<size_t>(static_cast<double>(words.size() - 1) * u * u * u)];
  };
  const uint64_t conversations = o.users * 2;
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
  for (uint64_t i = 0; i < conversations; ++i) {
    uint64_t a = users[rng() % users.size()], c = users[rng() % users.size()];
    if (a == c) c = users[(rng() % (users.size() - 1) + 1 + (a % users.size())) % users.size()];
    if (a == c) continue;
    pairs.emplace_back(a, c);
  }
  std::string text;
  for (uint64_t i = 0; i < o.messages; ++i) {
    uint64_t kind = rng() % 100;
    std::string stream;
    uint64_t sender = 0;
    if (kind < 70) {
      auto [a, c] = pairs[rng() % pairs.size()];
      stream = single_stream(a, c);
      sender = rng() % 2 ? a : c;
    } else if (kind < 95) {
      stream = group_stream(1 + rng() % o.groups);
      sender = users[rng() % users.size()];
    } else {
      stream = std::string(kWorldStream);
      sender = users[rng() % users.size()];
    }
    text.clear();
    size_t n = 3 + rng() % 10;
    bool zh = rng() % 20 == 0;
    for (size_t w = 0; w < n; ++w) {
      if (!zh && w) text += ' ';
      text += zh ? chinese[rng() % chinese.size()] : word();
    }
    uint64_t id = builder.message(stream, sender, text);
    if (rng() % 100 == 0) builder.recall(stream, sender, id, builder.last_seq(stream));
    if (rng() % 10 == 0) builder.read(stream, sender == users[0] ? users[1] : users[0], builder.last_seq(stream));
    if (builder.error()) {
      std::fprintf(stderr, "appending: %s\n", builder.error()->to_string().c_str());
      return 1;
    }
  }
  if (auto f = builder.flush(); !f) {
    std::fprintf(stderr, "appending: %s\n", f.error().to_string().c_str());
    return 1;
  }
  std::printf("generated %llu events (%llu messages) in %.1f s\n", static_cast<unsigned long long>(builder.events()),
              static_cast<unsigned long long>(o.messages), seconds_since(start));
  return 0;
}

// Times the sink's apply() calls, so the report can split the rebuild's wall time into applying
// to RocksDB and the rest: waiting for the reader thread (which polls, verifies and filters the
// log concurrently, so this is near zero while applying is the slower side).
class TimedSink final : public ProjectionSink {
 public:
  explicit TimedSink(ProjectionSink& inner) : inner_(inner) {}
  std::string_view name() const override { return inner_.name(); }
  Result<std::vector<PartitionPosition>> positions() override { return inner_.positions(); }
  Status apply(const EventBatch& batch) override {
    auto t = Clock::now();
    auto r = inner_.apply(batch);
    apply_s += seconds_since(t);
    return r;
  }
  Status dump(const RowVisitor& visit) override { return inner_.dump(visit); }
  double apply_s = 0;

 private:
  ProjectionSink& inner_;
};

int rebuild(const Options& o, EventLog& log, const std::string& dir, bool disable_wal, const char* what) {
  std::filesystem::remove_all(dir);
  RocksDbModelConfig mc;
  mc.dir = dir;
  mc.disable_wal = disable_wal;
  mc.bulk_load = disable_wal;  // the replay target's settings; the live build keeps the server's
  auto model = open_rocksdb_model(mc);
  if (!model) {
    std::fprintf(stderr, "%s\n", model.error().to_string().c_str());
    return 1;
  }
  auto n = log.partition_count(kEventsTopic);
  if (!n) {
    std::fprintf(stderr, "%s\n", n.error().to_string().c_str());
    return 1;
  }
  std::vector<int64_t> ends;
  int64_t total = 0;
  for (int32_t p = 0; p < *n; ++p) {
    ends.push_back(*log.end_offset({std::string(kEventsTopic), p}));
    total += ends.back();
  }
  TimedSink timed(**model);
  Projector projector(log, timed, ProjectorConfig{o.batch});
  auto start = Clock::now();
  auto r = projector.run_until(ends);
  double run_s = seconds_since(start);
  if (r && disable_wal) r = (*model)->flush();
  double secs = seconds_since(start);
  if (!r) {
    std::fprintf(stderr, "rebuild failed: %s\n", r.error().to_string().c_str());
    return 1;
  }
  double rate = static_cast<double>(total) / secs;
  std::printf("%s: %lld events (%llu applied) in %.2f s = %.0f events/s\n", what, static_cast<long long>(total),
              static_cast<unsigned long long>(projector.applied()), secs, rate);
  std::printf("  of which: applying %.2f s, waiting for the log reader %.2f s, final flush %.2f s\n", timed.apply_s,
              run_s - timed.apply_s, secs - run_s);
  std::printf("RESULT {\"bench\":\"replay\",\"case\":\"%s\",\"events\":%lld,\"seconds\":%.3f,\"events_per_s\":%.0f}\n",
              what, static_cast<long long>(total), secs, rate);
  return 0;
}

// A query from a message's text: two adjacent characters of a Chinese one (the generator writes
// those without spaces), else one word (70%) or two.
std::string query_from(const std::string& content, std::mt19937_64& rng) {
  if (!content.empty() && static_cast<unsigned char>(content[0]) >= 0xe0) {
    size_t chars = content.size() / 3;
    size_t at = chars > 2 ? rng() % (chars - 1) : 0;
    return content.substr(3 * at, 6);
  }
  std::vector<std::string> words;
  for (size_t i = 0; i < content.size();) {
    size_t j = content.find(' ', i);
    if (j == std::string::npos) j = content.size();
    if (j > i + 1) words.push_back(content.substr(i, j - i));
    i = j + 1;
  }
  if (words.empty()) return content;
  std::string q = words[rng() % words.size()];
  if (rng() % 10 >= 7) q += " " + words[rng() % words.size()];
  return q;
}

int search_bench(const Options& o, const std::string& dir) {
  RocksDbModelConfig mc;
  mc.dir = dir;
  auto model = open_rocksdb_model(mc);
  if (!model) {
    std::fprintf(stderr, "%s\n", model.error().to_string().c_str());
    return 1;
  }
  QueryService query(**model);
  std::mt19937_64 rng(7);
  std::vector<double> ms;
  uint64_t results = 0, full_pages = 0;
  for (uint64_t attempt = 0; ms.size() < o.search && attempt < o.search * 20; ++attempt) {
    auto cred = (*model)->credentials("user" + std::to_string(rng() % o.users));
    if (!cred || !*cred) continue;
    uint64_t user = (**cred).user_id;
    auto convs = (*model)->conversations(user);
    if (!convs || convs->empty()) continue;
    const auto& conv = (*convs)[rng() % convs->size()];
    auto page = (*model)->history(conv.conversation_id, HistoryRange{0, 0, false, 50});
    if (!page || page->messages.empty()) continue;
    const auto& m = page->messages[rng() % page->messages.size()];
    if (m.message_type == "system" || m.recalled) continue;
    std::string q = query_from(m.content, rng);
    auto t = Clock::now();
    auto r = query.search_messages(SearchRequest{user, q, "", 0, 20});
    ms.push_back(seconds_since(t) * 1000);
    if (!r) {
      std::fprintf(stderr, "search failed: %s\n", r.error().to_string().c_str());
      return 1;
    }
    results += r->results.size();
    if (r->results.size() == 20) ++full_pages;
  }
  if (ms.empty()) {
    std::fprintf(stderr, "no query could be made from the model at %s\n", dir.c_str());
    return 1;
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * static_cast<double>(ms.size())))]; };
  std::printf("search: %zu queries, p50 %.2f ms, p99 %.2f ms, max %.2f ms; %.1f results a query, %llu full pages\n",
              ms.size(), pct(0.5), pct(0.99), ms.back(), static_cast<double>(results) / static_cast<double>(ms.size()),
              static_cast<unsigned long long>(full_pages));
  std::printf("RESULT {\"bench\":\"search\",\"queries\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}\n",
              ms.size(), pct(0.5), pct(0.99), ms.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"imlog-bench-replay: generate an event log and time a rebuild of the RocksDB model"};
  app.add_option("--dir", o.dir, "data directory: the log goes to DIR/log (default /tmp/imlog-bench-replay)");
  app.add_option("--messages", o.messages, "messages to generate (default 1000000)");
  app.add_option("--users", o.users, "users (default 10000)");
  app.add_option("--groups", o.groups, "groups of 50 (default 200)")->check(CLI::PositiveNumber);
  app.add_option("--partitions", o.partitions, "partitions of im.events (default 4)");
  app.add_flag("--generate-only", o.generate_only, "write the log and stop");
  app.add_flag("--reuse", o.reuse, "use the log already in DIR/log");
  app.add_option("--batch", o.batch, "events per projector batch (default 65536, as replay)");
  app.add_flag("--live", o.live, "also build DIR/model with the WAL on, as the server's projector does");
  app.add_option("--search", o.search, "then time N message searches on the rebuilt model (default 0)");
  CLI11_PARSE(app, argc, argv);

  if (!o.reuse) std::filesystem::remove_all(o.dir);
  std::filesystem::create_directories(o.dir);
  LocalLogConfig lc;
  lc.dir = o.dir + "/log";
  auto log = LocalLog::open(lc);
  if (!log) {
    std::fprintf(stderr, "%s\n", log.error().to_string().c_str());
    return 1;
  }
  if (!o.reuse) {
    if (int rc = generate(o, **log); rc != 0) return rc;
  }
  if (o.generate_only) return 0;
  if (int rc = rebuild(o, **log, o.dir + "/model.bench", true, "rocksdb rebuild (no WAL)"); rc != 0) return rc;
  if (o.live) {
    if (int rc = rebuild(o, **log, o.dir + "/model", false, "rocksdb live build (WAL)"); rc != 0) return rc;
  }
  if (o.search > 0) return search_bench(o, o.dir + "/model.bench");
  return 0;
}
