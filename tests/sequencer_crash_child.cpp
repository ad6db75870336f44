// sequencer_crash_child: one engine process under a steady command load of its own, for the crash
// test (tests/sequencer_crash_test.cpp), which SIGKILLs it at random moments and restarts it.
//
//   sequencer_crash_child (--log-dir DIR | --bootstrap HOST:PORT,...) --state-dir DIR
//                         (--count M [--from N] [--window W] | --script FILE)
//                         [--gateway GW] [--partitions P] [--checkpoint-ms MS]
//                         [--parent-pid PID]   (dies with PID, the test, even on its SIGKILL)
//
// It runs a LogDirectory and a Sequencer on the log (the distributed mode's transports), and acts
// as the client and its gateway:
//   - client: sends commands N, N+1, ..., M-1 to im.commands, at most W beyond the lowest command
//     not yet acked (a client's window). Command i is a pure function of i (stream, actor,
//     client_msg_id "c-<i>", request id i+1), so a restarted child with a lower --from re-sends
//     commands exactly as a client retries them;
//   - gateway: reads im.deliver.<GW> from offset 0 for the engine's answers: Accepted (an ack,
//     sent once the event is durable and valid), Duplicate, Refused.
// Command mix: groups group_1..group_3 created by user 1, users 2..4 join each, then messages to
// `world` (users 1..6) and to the groups (their members): testing::crash_load_command(). Every
// command must be accepted.
//
// Output, one line each, flushed (the test reads it while the process runs):
//   started                                   the engine and the readers run; sending starts
//   ack <cmid> <stream> <seq> <event_id>      an Accepted reply
//   dup <cmid> <stream> <seq> <event_id>      a Duplicate reply
//   refused <cmid> <code> <message...>        a Refused reply (the test fails on it)
//   failure <message>                         the sequencer stopped on an error (exit 2)
//   done                                      every command 0..M-1 is acked; exits 0 after a
//                                             graceful stop
// Exit codes: 0 done, 1 bad arguments or start-up failure, 2 sequencer failure.
//
// --script FILE: no load of its own. FILE holds commands, one hex-encoded CommandEnvelope a line
// (the test builds them); the child sends them, in order, as one append, once the engine runs, and
// reports every answer its gateway gets from then on (replies already in the topic are not read):
//   reply <request_id> <Accepted|Duplicate|Refused> <cmid> <seq> <event_id> <code or -> <message...>
// It runs until it is killed: the refusal test (sequencer_crash_test.cpp) kills it once the
// answers it waits for came, with --checkpoint-ms long enough that no checkpoint was written.

#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "imlog/core/logging.h"
#include "imlog/engine/data_keys.h"
#include "imlog/engine/kafka_log.h"
#include "imlog/engine/local_log.h"
#include "imlog/engine/streams.h"
#include "imlog/testing/engine_harness.h"

namespace {

using namespace std::chrono_literals;
using namespace imlog;

// stdout, one whole line at a time from any thread.
class Out {
 public:
  void line(const std::string& s) {
    std::lock_guard lock(mu_);
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

 private:
  std::mutex mu_;
};

// Which commands are acked (from the log), and the client's window.
class Acks {
 public:
  explicit Acks(uint64_t count) : acked_(count, false) {}
  // Returns whether it was new.
  bool mark(uint64_t i) {
    std::lock_guard lock(mu_);
    if (i >= acked_.size() || acked_[i]) return false;
    acked_[i] = true;
    while (low_ < acked_.size() && acked_[low_]) ++low_;
    cv_.notify_all();
    return true;
  }
  // Waits up to `timeout` for the window to admit command i; returns whether it does.
  bool wait_window(uint64_t i, uint64_t window, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return i < low_ + window; });
  }
  uint64_t low() {
    std::lock_guard lock(mu_);
    return low_;
  }
  bool all(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return low_ == acked_.size(); });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> acked_;
  uint64_t low_ = 0;
};

// The commands of a --script file, or an error naming the line.
Result<std::vector<fb::CommandEnvelopeT>> read_script(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(std::errc::no_such_file_or_directory, "cannot read " + path);
  std::vector<fb::CommandEnvelopeT> out;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty()) continue;
    std::string bytes;
    for (size_t i = 0; i + 1 < line.size(); i += 2) {
      bytes.push_back(static_cast<char>(std::stoi(line.substr(i, 2), nullptr, 16)));
    }
    auto c = read_command(bytes);
    if (!c) return fail(c.error().with_context(path + " line " + std::to_string(n)));
    fb::CommandEnvelopeT t;
    (*c)->UnPackTo(&t);
    out.push_back(std::move(t));
  }
  return out;
}

// --script: sends the script, then reports its gateway's answers until killed. Returns only on a
// failure.
int run_script(EventLog& log, testing::EngineNode& node, const std::string& gateway,
               const std::vector<fb::CommandEnvelopeT>& script, Out& out) {
  auto end = log.end_offset({delivery_topic(gateway), 0});
  if (!end) {
    out.line("failure reading replies: " + end.error().to_string());
    return 1;
  }
  ConsumerOptions o;
  auto c = log.consumer(o);
  if (auto s = c->assign({{delivery_topic(gateway), 0, *end}}); !s) {
    out.line("failure reading replies: " + s.error().to_string());
    return 1;
  }
  out.line("started");
  for (auto s = testing::submit(log, script); !s; s = testing::submit(log, script)) {
    std::fprintf(stderr, "sending the script: %s (sending again)\n", s.error().to_string().c_str());
  }
  std::vector<Record> records;
  while (true) {
    if (auto f = node.sequencer().failure(); !f.empty()) {
      out.line("failure " + f);
      return 2;
    }
    if (auto s = c->poll(records, 200ms); !s) {
      if (s.error().retryable()) continue;
      out.line("failure reading replies: " + s.error().to_string());
      return 1;
    }
    for (const auto& r : records) {
      auto d = read_delivery(r.value);
      if (!d || (*d)->reply() == nullptr) continue;
      const fb::CommandReply& reply = *(*d)->reply();
      std::string code(sv(reply.code()));
      out.line("reply " + std::to_string(reply.request_id()) + " " + fb::EnumNameReplyStatus(reply.status()) + " " +
               std::string(sv(reply.client_msg_id())) + " " + std::to_string(reply.seq()) + " " +
               std::to_string(reply.event_id()) + " " + (code.empty() ? "-" : code) + " " +
               std::string(sv(reply.message())));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine process for the sequencer crash test"};
  std::string log_dir, bootstrap, state_dir, gateway = "gw-crash", log_level = "warn", script_file;
  uint64_t from = 0, count = 0, window = 32, checkpoint_ms = 200;
  int32_t partitions = 4;
  auto* local = app.add_option("--log-dir", log_dir, "LocalLog directory");
  app.add_option("--bootstrap", bootstrap, "Kafka bootstrap list")->excludes(local);
  app.add_option("--state-dir", state_dir, "the sequencer's state store")->required();
  auto* load = app.add_option("--count", count, "commands 0..count-1");
  app.add_option("--script", script_file, "send these commands instead (hex CommandEnvelopes)")->excludes(load);
  app.add_option("--checkpoint-ms", checkpoint_ms, "the engine's checkpoint interval");
  app.add_option("--from", from, "first command this run sends");
  app.add_option("--gateway", gateway, "gateway id of the replies");
  app.add_option("--partitions", partitions, "partitions of im.commands / im.events");
  app.add_option("--window", window, "commands sent beyond the lowest unacked one");
  app.add_option("--log-level", log_level, "engine log level");
  pid_t parent_pid = 0;
  app.add_option("--parent-pid", parent_pid, "the test: die with it, even when it is SIGKILLed");
  CLI11_PARSE(app, argc, argv);
  if (parent_pid > 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent_pid) return 1;  // it died before prctl
  }
  if (log_dir.empty() == bootstrap.empty()) {
    std::fprintf(stderr, "give exactly one of --log-dir and --bootstrap\n");
    return 1;
  }
  if (script_file.empty() && count == 0) {
    std::fprintf(stderr, "give --count or --script\n");
    return 1;
  }
  std::vector<fb::CommandEnvelopeT> script;
  if (!script_file.empty()) {
    auto s = read_script(script_file);
    if (!s) {
      std::fprintf(stderr, "%s\n", s.error().to_string().c_str());
      return 1;
    }
    script = std::move(*s);
  }
  setup_logging(LogConfig{log_level, "text"});

  std::unique_ptr<EventLog> log;
  if (!log_dir.empty()) {
    LocalLogConfig c;
    c.dir = log_dir;
    auto l = LocalLog::open(c);
    if (!l) {
      std::fprintf(stderr, "opening %s: %s\n", log_dir.c_str(), l.error().to_string().c_str());
      return 1;
    }
    log = std::move(*l);
  } else {
    KafkaLogConfig c;
    std::stringstream in(bootstrap);
    for (std::string b; std::getline(in, b, ',');) {
      if (!b.empty()) c.brokers.push_back(b);
    }
    c.client_id = "crash-child";
    c.session_timeout = 6000ms;  // the mock makes a rejoin wait session.timeout - 1 s
    auto l = KafkaLog::open(c);
    if (!l) {
      std::fprintf(stderr, "connecting to %s: %s\n", bootstrap.c_str(), l.error().to_string().c_str());
      return 1;
    }
    log = std::move(*l);
  }
  if (auto s = testing::create_engine_topics(*log, partitions, gateway); !s) {
    std::fprintf(stderr, "topics: %s\n", s.error().to_string().c_str());
    return 1;
  }

  EngineConfig ec;
  ec.state_dir = state_dir;
  ec.instance_id = "crash-child-" + std::to_string(::getpid());
  ec.checkpoint_interval = std::chrono::milliseconds(checkpoint_ms);  // default: several between kills
  // The data keys live beside the state, in the test's directory: the same keys after a restart,
  // and nothing left in /tmp by a child killed with SIGKILL (test_keys() makes a directory per
  // process, removed only when the process exits).
  auto keys = open_rocksdb_key_store(state_dir + "-keys");
  if (!keys) {
    std::fprintf(stderr, "keys: %s\n", keys.error().to_string().c_str());
    return 1;
  }
  auto node = testing::EngineNode::start(*log, ec, SystemClock::instance(), nullptr, keys->get());
  if (!node) {
    std::fprintf(stderr, "engine: %s\n", node.error().to_string().c_str());
    return 1;
  }

  Out out;
  if (!script_file.empty()) return run_script(*log, **node, gateway, script, out);
  Acks acks(count);
  std::atomic<bool> stopping{false};
  std::atomic<bool> reader_failed{false};

  // The gateway's half: the engine's answers (acks, duplicates, refusals). An ack is sent only once
  // its event is durable and valid, so the test checks every one against the log it finds.
  std::thread replies([&] {
    ConsumerOptions o;
    auto c = log->consumer(o);
    if (auto s = c->assign({{delivery_topic(gateway), 0, 0}}); !s) {
      out.line("failure reading replies: " + s.error().to_string());
      reader_failed = true;
      return;
    }
    std::vector<Record> records;
    while (!stopping) {
      if (auto s = c->poll(records, 200ms); !s) {
        if (s.error().retryable()) continue;
        out.line("failure reading replies: " + s.error().to_string());
        reader_failed = true;
        return;
      }
      for (const auto& r : records) {
        auto d = read_delivery(r.value);
        if (!d || (*d)->reply() == nullptr) continue;
        const fb::CommandReply& reply = *(*d)->reply();
        if (reply.status() == fb::ReplyStatus::Accepted || reply.status() == fb::ReplyStatus::Duplicate) {
          auto cmid = sv(reply.client_msg_id());
          out.line((reply.status() == fb::ReplyStatus::Accepted ? "ack " : "dup ") + std::string(cmid) + " " +
                   std::string(sv(reply.stream())) + " " + std::to_string(reply.seq()) + " " +
                   std::to_string(reply.event_id()));
          if (auto i = testing::crash_load_index(cmid)) acks.mark(*i);
        } else if (reply.status() == fb::ReplyStatus::Refused) {
          out.line("refused " + std::string(sv(reply.client_msg_id())) + " " +
                   std::string(sv(reply.code())) + " " + std::string(sv(reply.message())));
        }
      }
    }
  });

  out.line("started");
  int rc = 0;
  auto engine_failed = [&] {
    if (auto f = (*node)->sequencer().failure(); !f.empty()) {
      out.line("failure " + f);
      return true;
    }
    return reader_failed.load();
  };
  // The client's half: send within the window; an append that fails is sent again.
  for (uint64_t i = from; i < count && rc == 0;) {
    if (engine_failed()) {
      rc = 2;
      break;
    }
    if (!acks.wait_window(i, window, 200ms)) continue;
    std::vector<fb::CommandEnvelopeT> batch;
    uint64_t limit = acks.low() + window;
    for (uint64_t j = i; j < count && j < limit && batch.size() < 8; ++j) {
      batch.push_back(testing::crash_load_command(j, gateway));
    }
    if (auto s = testing::submit(*log, batch); !s) {
      std::fprintf(stderr, "sending commands %llu..: %s (sending again)\n",
                   static_cast<unsigned long long>(i), s.error().to_string().c_str());
      continue;
    }
    i += batch.size();
  }
  while (rc == 0 && !acks.all(200ms)) {
    if (engine_failed()) rc = 2;
  }
  if (rc == 0) out.line("done");
  stopping = true;
  replies.join();
  (*node)->stop();
  node->reset();
  return rc;
}
