// imlog-bench-storage: bytes on disk as the message count grows, and what a retention run costs
// (docs/benchmarks.md, "Storage — sizes on disk"; docs/data-lifecycle.md).
//
//   imlog-bench-storage [--dir DIR] [--messages N] [--step N] [--users N] [--partners N]
//                       [--days N] [--keep-days N] [--mysql-port P ...]
//
// The single node's write path without its gateway: a real Sequencer on the embedded log, fed
// through the in-process command queue and answering through the in-process deliveries, seals
// every message with its sender's data key (a RocksDB key store, cached as `imlog serve` does),
// and the server's projector follows im.events into the RocksDB model (and the MySQL model with
// --mysql-port). N one-to-one messages of 60 bytes between U users, each talking with P partners,
// each with a `client_msg_id` and `sent_at`, spread evenly over D days of a manual clock, so the
// engine's dedupe window (168h by default) passes over the older ones as it would in a real
// deployment.
//
// 1. Growth: every `step` messages, once the projectors caught up, the bytes on disk (every file,
//    as `du --apparent-size` counts them: SST, WAL, MANIFEST) of the log, the engine's state store, the key store
//    and the RocksDB model, and MySQL's data + index length, one line each step.
// 2. A retention run: the clock moves to a day after the last message and a RetentionWorker
//    (retention.default_keep_days = K) starts, as the tasks role would after a restart: it reads
//    im.events from its start, then sends each conversation's expiry; the engine appends one
//    MessagesExpired per conversation and the models delete the rows. Timed from the worker's
//    start to every expiry applied by every model; the bytes read and written on the block device
//    by this process (and by mysqld with --mysql-port) from /proc/PID/io; the sizes after.
//
// Prints one line per step, a summary, and one "RESULT {json}" line.

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <cppconn/connection.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>

#include "imlog/engine/data_keys.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/engine/transport.h"
#include "imlog/projections/mysql_model.h"
#include "imlog/projections/projector.h"
#include "imlog/projections/rocksdb_model.h"
#include "imlog/tasks/retention.h"
#include "imlog/testing/engine_harness.h"
#include "imlog/testing/servers.h"

namespace {

using namespace imlog;
namespace fs = std::filesystem;
using Steady = std::chrono::steady_clock;
constexpr const char* kGateway = "bench";
constexpr int32_t kPartitions = 4;

struct Options {
  std::string dir = "/tmp/imlog-bench-storage";
  uint64_t messages = 10'000'000;
  uint64_t step = 1'000'000;
  uint64_t users = 10'000;
  uint64_t partners = 10;
  uint32_t days = 20;
  uint32_t keep_days = 10;
  uint64_t in_flight = 8192;
  MysqlConfig mysql;
  bool with_mysql = false;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "imlog-bench-storage: %s\n", what.c_str());
  std::fflush(stdout);
  std::_Exit(1);
}

template <class T>
T must(Result<T> r, const char* what) {
  if (!r) die(std::string(what) + ": " + r.error().to_string());
  return std::move(*r);
}

void must(const Status& s, const char* what) {
  if (!s) die(std::string(what) + ": " + s.error().to_string());
}

double seconds_since(Steady::time_point t) { return std::chrono::duration<double>(Steady::now() - t).count(); }

// The size of every file under `dir` (`du --apparent-size`): RocksDB preallocates a WAL's space
// (tens of MB that a small store never fills), which allocated blocks would count.
uint64_t disk_bytes(const fs::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

// read_bytes and write_bytes of /proc/PID/io: what reached (or came from) the block device.
struct DiskIo {
  uint64_t read = 0, written = 0;
};
DiskIo disk_io(const std::string& pid) {
  DiskIo io;
  std::ifstream in("/proc/" + pid + "/io");
  for (std::string key; in >> key;) {
    uint64_t v = 0;
    in >> v;
    if (key == "read_bytes:") io.read = v;
    if (key == "write_bytes:") io.written = v;
  }
  return io;
}

// The single node's engine: the log, the key store, the in-process transports and a sequencer,
// on a manual clock. Answers are counted as they come.
class Engine {
 public:
  Engine(const Options& o, ManualClock& clock) : o_(o), clock_(clock) {}

  void start() {
    fs::create_directories(o_.dir);
    keys_ = std::make_unique<CachedKeyStore>(must(open_rocksdb_key_store(o_.dir + "/keys"), "opening the key store"),
                                             std::chrono::seconds(60));
    LocalLogConfig lc;
    lc.dir = o_.dir + "/log";
    log_ = must(LocalLog::open(lc), "opening the log");
    must(log_->create_topic(TopicSpec{std::string(kEventsTopic), kPartitions, true}), "creating im.events");
    commands_ = in_process_commands(kPartitions);
    deliveries_ = in_process_deliveries();
    subscription_ = must(deliveries_->subscribe(kGateway, [this](std::vector<std::string>&& batch) { on_answers(batch); }),
                         "subscribing to the answers");
    EngineConfig ec;
    ec.state_dir = o_.dir + "/engine";
    ec.instance_id = "bench-storage";
    ec.limits.default_keep_days = o_.keep_days;
    ec.push_one_to_one = true;
    SequencerTransports transports{*commands_, *deliveries_};
    node_ = must(testing::EngineNode::start(*log_, ec, clock_, &transports, keys_.get()), "starting the engine");
    if (!node_->wait_for_partitions(kPartitions)) die("the sequencer did not take its partitions");
  }

  // Sends one command; waits while `in_flight` are unanswered, and while the queue is full.
  void send(fb::CommandEnvelopeT c) {
    while (sent_ - answered_.load() >= o_.in_flight) std::this_thread::sleep_for(std::chrono::microseconds(200));
    c.reply_to->request_id = ++sent_;
    c.timestamp_ms = clock_.now_ms();
    std::string stream = c.stream;
    std::string bytes = encode_command(c);
    for (;;) {
      std::atomic<bool> refused{false};
      commands_->send(stream, bytes, [&](const Error&) { refused = true; });
      if (!refused) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void wait_answered() {
    auto deadline = Steady::now() + std::chrono::minutes(5);
    while (answered_.load() < sent_) {
      if (Steady::now() > deadline) die("the engine stopped answering");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (refused_.load() > 0) die(std::to_string(refused_.load()) + " commands were refused: " + last_refusal());
  }

  // The result ids (user ids of registrations) of the answers so far, by request id.
  uint64_t result_of(uint64_t request_id) {
    std::lock_guard lock(mu_);
    auto it = results_.find(request_id);
    return it == results_.end() ? 0 : it->second;
  }

  LocalLog& log() { return *log_; }
  KeyStore& keys() { return *keys_; }
  CommandTransport& commands() { return *commands_; }

  void stop() {
    if (node_) node_->stop();
    subscription_.reset();
  }

 private:
  void on_answers(const std::vector<std::string>& batch) {
    for (const auto& bytes : batch) {
      auto d = read_delivery(bytes);
      if (!d || (*d)->reply() == nullptr) continue;
      const auto* r = (*d)->reply();
      if (r->status() != fb::ReplyStatus::Accepted && r->status() != fb::ReplyStatus::Duplicate) {
        std::lock_guard lock(mu_);
        last_refusal_ = std::string(sv(r->code())) + " " + std::string(sv(r->message()));
        ++refused_;
      } else if (r->result_id() != 0) {
        std::lock_guard lock(mu_);
        results_[r->request_id()] = r->result_id();
      }
      ++answered_;
    }
  }

  std::string last_refusal() {
    std::lock_guard lock(mu_);
    return last_refusal_;
  }

  const Options& o_;
  ManualClock& clock_;
  std::unique_ptr<KeyStore> keys_;
  std::unique_ptr<LocalLog> log_;
  std::unique_ptr<CommandTransport> commands_;
  std::unique_ptr<DeliveryTransport> deliveries_;
  std::unique_ptr<DeliveryTransport::Subscription> subscription_;
  std::unique_ptr<testing::EngineNode> node_;
  uint64_t sent_ = 0;
  std::atomic<uint64_t> answered_{0};
  std::atomic<uint64_t> refused_{0};
  std::mutex mu_;
  std::unordered_map<uint64_t, uint64_t> results_;
  std::string last_refusal_;
};

// The read models and the projectors that follow the log into them, as the server runs them.
class Models {
 public:
  Models(const Options& o, Engine& engine) : o_(o), engine_(engine) {}

  void start() {
    RocksDbModelConfig rc;
    rc.dir = o_.dir + "/model";
    rocks_ = must(open_rocksdb_model(rc), "opening the RocksDB model");
    ProjectorConfig pc;
    pc.keys = &engine_.keys();
    projectors_.push_back(std::make_unique<Projector>(engine_.log(), *rocks_, pc));
    if (o_.with_mysql) {
      mysql_ = must(open_mysql_model(o_.mysql), "opening the MySQL model");
      projectors_.push_back(std::make_unique<Projector>(engine_.log(), *mysql_, pc));
    }
    for (auto& p : projectors_) must(p->start(), "starting a projector");
  }

  void catch_up() {
    for (auto& p : projectors_) {
      if (!p->drain(std::chrono::minutes(30))) {
        auto why = p->failure();
        die("a projector did not catch up" + (why ? ": " + why->to_string() : std::string()));
      }
    }
  }

  void stop() {
    for (auto& p : projectors_) p->stop();
    projectors_.clear();
  }

 private:
  const Options& o_;
  Engine& engine_;
  std::unique_ptr<ProjectionSink> rocks_;
  std::unique_ptr<MysqlModel> mysql_;
  std::vector<std::unique_ptr<Projector>> projectors_;
};

// The MySQL model's database on disk (its directory under the server's datadir: InnoDB's files,
// as du counts them) and the server's pid, for its I/O.
class MysqlDisk {
 public:
  explicit MysqlDisk(const MysqlConfig& c) : database_(c.database) {
    auto conn = testing::raw_mysql(c);
    std::unique_ptr<sql::Statement> st(conn->createStatement());
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT @@datadir, @@pid_file"));
    if (!rs->next()) die("MySQL: no datadir");
    datadir_ = rs->getString(1);
    std::ifstream(rs->getString(2)) >> pid_;
  }
  uint64_t bytes() const { return disk_bytes(fs::path(datadir_) / database_); }
  const std::string& pid() const { return pid_; }

 private:
  std::string database_, datadir_, pid_;
};

struct Sizes {
  uint64_t log = 0, engine = 0, keys = 0, model = 0, mysql = 0;
};

Sizes sizes(const Options& o, const MysqlDisk* mysql) {
  return Sizes{disk_bytes(o.dir + "/log"), disk_bytes(o.dir + "/engine"), disk_bytes(o.dir + "/keys"),
               disk_bytes(o.dir + "/model"), mysql ? mysql->bytes() : 0};
}

void print_sizes(const char* label, uint64_t messages, const Sizes& s) {
  auto per = [&](uint64_t b) { return messages ? static_cast<double>(b) / static_cast<double>(messages) : 0.0; };
  std::printf("%-9s %10" PRIu64 " messages: log %" PRIu64 " (%.0f/msg), engine %" PRIu64 " (%.0f/msg), keys %" PRIu64
              ", RocksDB model %" PRIu64 " (%.0f/msg), MySQL %" PRIu64 " (%.0f/msg)\n",
              label, messages, s.log, per(s.log), s.engine, per(s.engine), s.keys, s.model, per(s.model), s.mysql,
              per(s.mysql));
  std::fflush(stdout);
}

std::string sizes_json(uint64_t messages, const Sizes& s) {
  std::ostringstream j;
  j << "{\"messages\":" << messages << ",\"log\":" << s.log << ",\"engine\":" << s.engine << ",\"keys\":" << s.keys
    << ",\"model\":" << s.model << ",\"mysql\":" << s.mysql << "}";
  return j.str();
}

std::vector<uint64_t> register_users(const Options& o, Engine& engine) {
  std::vector<uint64_t> requests;
  for (uint64_t i = 0; i < o.users; ++i) {
    engine.send(testing::register_user("storage_" + std::to_string(i), "r" + std::to_string(i), kGateway, 0));
    requests.push_back(i + 1);
  }
  engine.wait_answered();
  std::vector<uint64_t> users;
  for (uint64_t r : requests) {
    uint64_t id = engine.result_of(r);
    if (id == 0) die("registration " + std::to_string(r) + " has no user id");
    users.push_back(id);
  }
  return users;
}

// Message i: from a user to one of their partners, 60 bytes, stamped with the clock.
fb::CommandEnvelopeT message(const Options& o, const std::vector<uint64_t>& users, uint64_t i, int64_t now_ms) {
  uint64_t n = users.size();
  uint64_t from = i % n;
  uint64_t to = (from + 1 + (i / n) % o.partners) % n;
  std::string text = "message " + std::to_string(100000 + i) + ": see you at the station at seven, ok?!";
  text.resize(60, ' ');
  auto c = testing::send_message(single_stream(users[from], users[to]), users[from], "m-" + std::to_string(i),
                                 std::move(text), kGateway, 0);
  c.client_sent_at = now_ms;
  return c;
}


struct RetentionRun {
  double caught_up_s = 0, done_s = 0;
  uint64_t events_read = 0, conversations = 0, expired = 0;
  DiskIo self, mysqld;
};

DiskIo minus(DiskIo a, DiskIo b) { return DiskIo{a.read - b.read, a.written - b.written}; }

// A worker started as after a restart: it reads the log from its start, then expires every
// conversation as far as the policy allows; done once every expiry it sent is in the log, a pass
// more sends nothing, and the models have applied them all.
RetentionRun run_retention(const Options& o, Engine& engine, Models& models, const ManualClock& clock,
                           const MysqlDisk* mysql) {
  std::string self = std::to_string(::getpid());
  DiskIo self0 = disk_io(self), mysqld0 = mysql ? disk_io(mysql->pid()) : DiskIo{};
  RetentionConfig rc;
  rc.default_keep_days = o.keep_days;
  rc.interval = std::chrono::seconds(1);
  RetentionWorker worker(engine.log(), engine.commands(), rc, nullptr, clock);
  auto started = Steady::now();
  must(worker.start(), "starting the retention worker");
  RetentionRun run;
  const auto& st = worker.stats();
  while (!st.caught_up.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  run.caught_up_s = seconds_since(started);
  // Done once a pass has ended with every expiry it sent read back and applied by the models,
  // timed then; the next pass, which must send nothing more, only confirms it (not timed).
  uint64_t timed_scans = 0, timed_sent = 0;
  for (;;) {
    uint64_t sent = st.expiries_sent.load(), scans = st.scans.load();
    if (timed_scans == 0 && scans > 0 && sent > 0 && st.expired.load() >= sent) {
      models.catch_up();
      run.done_s = seconds_since(started);
      timed_scans = scans;
      timed_sent = sent;
    }
    if (timed_scans != 0 && st.scans.load() > timed_scans) {
      if (st.expiries_sent.load() == timed_sent) break;
      timed_scans = 0;  // the pass after sent more: not done yet
    }
    if (seconds_since(started) > 3600) die("the retention run did not settle within an hour");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  models.catch_up();
  run.events_read = st.events.load();
  run.conversations = st.conversations.load();
  run.expired = st.expired.load();
  worker.stop();
  run.self = minus(disk_io(self), self0);
  if (mysql) run.mysqld = minus(disk_io(mysql->pid()), mysqld0);
  return run;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"imlog storage growth and retention benchmark"};
  Options o;
  int32_t mysql_port = 0;
  app.add_option("--dir", o.dir, "working directory: new, or one this bench made (emptied first; default /tmp/imlog-bench-storage)");
  app.add_option("--messages", o.messages, "one-to-one messages (default 10000000)");
  app.add_option("--step", o.step, "measure sizes every N messages (default 1000000)")->check(CLI::PositiveNumber);
  app.add_option("--users", o.users, "users (default 10000)")->check(CLI::Range(2, 10'000'000));
  app.add_option("--partners", o.partners, "partners each user talks with (default 10)")->check(CLI::PositiveNumber);
  app.add_option("--days", o.days, "days of the manual clock the messages span (default 20)")->check(CLI::PositiveNumber);
  app.add_option("--keep-days", o.keep_days, "retention.default_keep_days of the retention run (default 10)");
  app.add_option("--mysql-port", mysql_port, "also project into MySQL on 127.0.0.1:PORT");
  app.add_option("--mysql-user", o.mysql.user);
  app.add_option("--mysql-password", o.mysql.password);
  app.add_option("--mysql-database", o.mysql.database, "with --mysql-port: created if missing, dropped first; not `imlog`");
  CLI11_PARSE(app, argc, argv);
  if (o.partners >= o.users) die("--partners must be less than --users");
  if (mysql_port != 0) {
    // drop() below empties the database: only one named for the bench, never a node's default.
    if (o.mysql.database.empty() || o.mysql.database == MysqlConfig{}.database) {
      die("--mysql-port needs --mysql-database naming a database for the bench (its tables are dropped)");
    }
    o.with_mysql = true;
    o.mysql.port = mysql_port;
    o.mysql.keys_database = o.mysql.database + "_keys";
  }
  // Empty the directory of a previous run, never one this bench did not make.
  std::error_code ec;
  if (fs::exists(fs::path(o.dir) / ".imlog-bench-storage")) fs::remove_all(o.dir, ec);
  if (fs::exists(o.dir) && !fs::is_empty(o.dir)) die(o.dir + " is not empty and not this bench's: give --dir a new path");
  fs::create_directories(o.dir);
  std::ofstream(fs::path(o.dir) / ".imlog-bench-storage") << "made by imlog-bench-storage\n";

  ManualClock clock(1'767'225'600'000);  // 2026-01-01T00:00:00Z
  std::unique_ptr<MysqlDisk> mysql_disk;
  if (o.with_mysql) {
    auto m = must(open_mysql_model(o.mysql), "opening the MySQL model");
    must(m->drop(), "dropping the MySQL model's tables");
  }
  Engine engine(o, clock);
  engine.start();
  Models models(o, engine);
  models.start();  // creates the MySQL model's database again
  if (o.with_mysql) mysql_disk = std::make_unique<MysqlDisk>(o.mysql);

  auto started = Steady::now();
  auto users = register_users(o, engine);
  std::printf("%" PRIu64 " users registered in %.1f s\n", users.size(), seconds_since(started));
  const int64_t span_ms = static_cast<int64_t>(o.days) * kDayMs;
  const int64_t start_ms = clock.now_ms();
  std::string growth = "[";
  auto step_started = Steady::now();
  for (uint64_t i = 0; i < o.messages; ++i) {
    clock.set_ms(start_ms + static_cast<int64_t>(static_cast<__int128>(span_ms) * (i + 1) / o.messages));
    engine.send(message(o, users, i, clock.now_ms()));
    if ((i + 1) % o.step != 0 && i + 1 != o.messages) continue;
    engine.wait_answered();
    double sequenced = seconds_since(step_started);
    models.catch_up();
    double projected = seconds_since(step_started) - sequenced;
    Sizes s = sizes(o, mysql_disk.get());
    print_sizes("growth", i + 1, s);
    std::printf("          this step: sequenced in %.1f s, the models caught up %.1f s later\n", sequenced, projected);
    growth += (growth.size() > 1 ? "," : "") + sizes_json(i + 1, s);
    step_started = Steady::now();
  }
  growth += "]";
  double generation_s = seconds_since(started);

  clock.advance_ms(kDayMs);  // the run comes a day after the last message
  RetentionRun run = run_retention(o, engine, models, clock, mysql_disk.get());
  Sizes after = sizes(o, mysql_disk.get());
  std::printf("retention (keep %u days of %u): worker read %" PRIu64 " events in %.1f s; %" PRIu64
              " conversations expired, all applied by every model %.1f s after the worker started\n",
              o.keep_days, o.days, run.events_read, run.caught_up_s, run.expired, run.done_s);
  std::printf("          disk I/O: this process read %" PRIu64 " and wrote %" PRIu64 " bytes; mysqld read %" PRIu64
              " and wrote %" PRIu64 "\n",
              run.self.read, run.self.written, run.mysqld.read, run.mysqld.written);
  print_sizes("after", o.messages, after);
  models.stop();
  engine.stop();

  std::printf("RESULT {\"bench\":\"storage\",\"messages\":%" PRIu64 ",\"users\":%" PRIu64 ",\"partners\":%" PRIu64
              ",\"days\":%u,\"keep_days\":%u,\"generation_s\":%.1f,\"growth\":%s,\"retention\":{\"caught_up_s\":%.2f,"
              "\"done_s\":%.2f,\"events_read\":%" PRIu64 ",\"conversations\":%" PRIu64 ",\"expired\":%" PRIu64
              ",\"read_bytes\":%" PRIu64 ",\"write_bytes\":%" PRIu64 ",\"mysqld_read_bytes\":%" PRIu64
              ",\"mysqld_write_bytes\":%" PRIu64 ",\"after\":%s}}\n",
              o.messages, o.users, o.partners, o.days, o.keep_days, generation_s, growth.c_str(), run.caught_up_s,
              run.done_s, run.events_read, run.conversations, run.expired, run.self.read, run.self.written,
              run.mysqld.read, run.mysqld.written, sizes_json(o.messages, after).c_str());
  return 0;
}
