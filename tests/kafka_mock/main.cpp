// imlog-kafka-mock: librdkafka's mock Kafka cluster as a process of its own, so tests talk to a
// Kafka-protocol broker over TCP (docs/architecture.md, "Two ways to run") and can break it on
// purpose.
//
//   imlog-kafka-mock --brokers 3 --dir DIR [--topic NAME:PARTITIONS ...] [--parent-pid PID]
//
// --parent-pid PID: PID is the process that starts this one; stop (as on SIGTERM) when it dies,
// so a test binary killed by a time-out leaves no broker behind.
//
// Start-up: creates the cluster and the given topics, writes DIR/bootstrap (the broker list) and
// then DIR/control ("127.0.0.1:PORT" of the command socket), each atomically (tmp + rename), so
// a reader that sees `control` (scripts/test waits for it) also sees `bootstrap`; then prints
// "ready <bootstrap>".
//
// Control socket: line-based TCP on 127.0.0.1, any number of clients over time (and at once).
// One command per line, one reply line each, "ok ..." or "error <why>":
//
//   ping                              ok pong
//   create-topic NAME PARTITIONS      ok created NAME PARTITIONS | ok exists NAME PARTITIONS
//   broker-down ID / broker-up ID     ok broker ID down|up
//   produce-errors COUNT ERRCODE [BROKER_ID]
//                                     the next COUNT Produce requests (to any broker, or to
//                                     BROKER_ID only) fail with ERRCODE (a number, or a name
//                                     such as NOT_LEADER_FOR_PARTITION)
//   produce-delay COUNT RTT_MS BROKER_ID
//                                     the broker stores the next COUNT Produce requests at once
//                                     but answers each RTT_MS late (a response "lost" past the
//                                     client's request.timeout.ms, so the client retries)
//   error-stack BROKER_ID             ok N: Produce errors still queued on that broker (so a
//                                     test can check that its injected errors were served)
//   leader TOPIC PARTITION BROKER_ID  moves a partition's leadership (the mock never fails over)
//   help                              the list above
//
// The mock's limits (docs/architecture.md, "Two ways to run"): ephemeral ports only, ~5 MiB
// retained per partition, no Admin API, transactions ignored, a group's first join waits 3 s.
//
// Threading: the mock cluster runs on librdkafka's own threads; this program's main thread runs
// one poll() loop over the control socket, its clients and a signalfd, and makes every mock call
// (each is a synchronous request to the mock thread). SIGTERM / SIGINT end the loop; the cluster
// is destroyed before its handle.

#include <arpa/inet.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kMaxLine = 4096;
constexpr int kMetadataTimeoutMs = 5000;
// The mock's produce ApiKey (Kafka protocol); rdkafka_mock.h takes the raw number.
constexpr int16_t kProduceApiKey = 0;

struct RdKafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Handle = std::unique_ptr<rd_kafka_t, RdKafkaDeleter>;

struct ClusterDeleter {
  void operator()(rd_kafka_mock_cluster_t* mc) const { rd_kafka_mock_cluster_destroy(mc); }
};
using Cluster = std::unique_ptr<rd_kafka_mock_cluster_t, ClusterDeleter>;

// Drops librdkafka's own log lines for the helper clients: a downed broker is expected here.
void quiet_log(const rd_kafka_t*, int, const char*, const char*) {}

Handle make_handle(const std::string& bootstrap, std::string& why) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, quiet_log);
  auto set = [&](const char* k, const std::string& v) {
    return rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK;
  };
  // Connected to every broker, so metadata can be read from any broker that is up.
  if (!bootstrap.empty() &&
      (!set("bootstrap.servers", bootstrap) || !set("allow.auto.create.topics", "false") ||
       !set("enable.sparse.connections", "false"))) {
    why = err;
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    why = err;
    rd_kafka_conf_destroy(conf);
    return nullptr;
  }
  return Handle(rk);
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// An error code given as a number or as a name ("NOT_LEADER_FOR_PARTITION", with or without the
// "RD_KAFKA_RESP_ERR_" prefix). Only codes librdkafka knows are accepted.
std::optional<rd_kafka_resp_err_t> parse_error_code(std::string_view s) {
  const rd_kafka_err_desc* descs = nullptr;
  size_t n = 0;
  rd_kafka_get_err_descs(&descs, &n);
  std::optional<int64_t> num = parse_int(s);
  if (s.starts_with("RD_KAFKA_RESP_ERR_")) s.remove_prefix(std::strlen("RD_KAFKA_RESP_ERR_"));
  for (size_t i = 0; i < n; ++i) {
    if (descs[i].name == nullptr) continue;
    if (num ? descs[i].code == *num : s == descs[i].name) return descs[i].code;
  }
  return std::nullopt;
}

std::vector<std::string> split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

bool write_atomically(const std::filesystem::path& path, const std::string& content) {
  auto tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content << '\n';
    if (!out.flush()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

// The mock cluster and the commands that change it. Main thread only.
class MockBroker {
 public:
  bool start(int brokers, std::string& why) {
    brokers_ = brokers;
    owner_ = make_handle("", why);
    if (!owner_) return false;
    cluster_.reset(rd_kafka_mock_cluster_new(owner_.get(), brokers));
    if (!cluster_) {
      why = "rd_kafka_mock_cluster_new failed";
      return false;
    }
    bootstrap_ = rd_kafka_mock_cluster_bootstraps(cluster_.get());
    // A client of the cluster itself, to read metadata: the mock has no call that says whether
    // a topic exists, and its set-leader call would auto-create a missing one.
    observer_ = make_handle(bootstrap_, why);
    return observer_ != nullptr;
  }

  void stop() {
    observer_.reset();
    cluster_.reset();  // before the handle that owns its thread
    owner_.reset();
  }

  [[nodiscard]] const std::string& bootstrap() const { return bootstrap_; }

  std::string create_topic(const std::string& name, int64_t partitions) {
    if (name.empty()) return "error create-topic: the topic name is empty";
    if (partitions < 1 || partitions > 100000) {
      return "error create-topic " + name + ": partitions must be 1..100000, got " +
             std::to_string(partitions);
    }
    int replication = brokers_ < 3 ? brokers_ : 3;
    rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(cluster_.get(), name.c_str(), static_cast<int>(partitions), replication);
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      std::string why;
      auto existing = partition_count(name, why);
      if (!existing) return "error create-topic " + name + ": exists, but " + why;
      if (*existing != partitions) {
        return "error create-topic " + name + ": exists with " + std::to_string(*existing) +
               " partitions, not " + std::to_string(partitions);
      }
      return "ok exists " + name + " " + std::to_string(partitions);
    }
    if (err) return "error create-topic " + name + ": " + rd_kafka_err2str(err);
    created_[name] = static_cast<int>(partitions);
    return "ok created " + name + " " + std::to_string(partitions);
  }

  std::string broker_state(int64_t id, bool up) {
    if (auto e = check_broker(up ? "broker-up" : "broker-down", id); !e.empty()) return e;
    auto bid = static_cast<int32_t>(id);
    rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(cluster_.get(), bid)
                                 : rd_kafka_mock_broker_set_down(cluster_.get(), bid);
    if (err) return std::string("error broker ") + std::to_string(id) + ": " + rd_kafka_err2str(err);
    return "ok broker " + std::to_string(id) + (up ? " up" : " down");
  }

  std::string produce_errors(int64_t count, rd_kafka_resp_err_t code, std::optional<int64_t> broker) {
    if (count < 1 || count > 100000) {
      return "error produce-errors: COUNT must be 1..100000, got " + std::to_string(count);
    }
    std::string done = "ok produce-errors " + std::to_string(count) + " " + rd_kafka_err2name(code);
    if (!broker) {
      std::vector<rd_kafka_resp_err_t> errs(static_cast<size_t>(count), code);
      rd_kafka_mock_push_request_errors_array(cluster_.get(), kProduceApiKey, errs.size(), errs.data());
      return done;
    }
    if (auto e = check_broker("produce-errors", *broker); !e.empty()) return e;
    for (int64_t i = 0; i < count; ++i) {
      rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
          cluster_.get(), static_cast<int32_t>(*broker), kProduceApiKey, 1, code, 0);
      if (err) return "error produce-errors: " + std::string(rd_kafka_err2str(err));
    }
    return done + " " + std::to_string(*broker);
  }

  std::string produce_delay(int64_t count, int64_t rtt_ms, int64_t broker) {
    if (count < 1 || count > 100000) {
      return "error produce-delay: COUNT must be 1..100000, got " + std::to_string(count);
    }
    if (rtt_ms < 0 || rtt_ms > 600000) {
      return "error produce-delay: RTT_MS must be 0..600000, got " + std::to_string(rtt_ms);
    }
    if (auto e = check_broker("produce-delay", broker); !e.empty()) return e;
    for (int64_t i = 0; i < count; ++i) {
      rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
          cluster_.get(), static_cast<int32_t>(broker), kProduceApiKey, 1, RD_KAFKA_RESP_ERR_NO_ERROR,
          static_cast<int>(rtt_ms));
      if (err) return "error produce-delay: " + std::string(rd_kafka_err2str(err));
    }
    return "ok produce-delay " + std::to_string(count) + " " + std::to_string(rtt_ms) + " " +
           std::to_string(broker);
  }

  std::string error_stack(int64_t broker) {
    if (auto e = check_broker("error-stack", broker); !e.empty()) return e;
    size_t n = 0;
    rd_kafka_resp_err_t err = rd_kafka_mock_broker_error_stack_cnt(
        cluster_.get(), static_cast<int32_t>(broker), kProduceApiKey, &n);
    if (err) return "error error-stack: " + std::string(rd_kafka_err2str(err));
    return "ok " + std::to_string(n);
  }

  std::string set_leader(const std::string& topic, int64_t partition, int64_t broker) {
    if (auto e = check_broker("leader", broker); !e.empty()) return e;
    std::string why;
    auto count = partition_count(topic, why);
    if (!count) return "error leader: " + why;
    if (partition < 0 || partition >= *count) {
      return "error leader: topic " + topic + " has partitions 0.." + std::to_string(*count - 1) + ", not " +
             std::to_string(partition);
    }
    rd_kafka_resp_err_t err = rd_kafka_mock_partition_set_leader(
        cluster_.get(), topic.c_str(), static_cast<int32_t>(partition), static_cast<int32_t>(broker));
    if (err) return "error leader: " + std::string(rd_kafka_err2str(err));
    return "ok leader " + topic + " " + std::to_string(partition) + " " + std::to_string(broker);
  }

 private:
  // Empty if `id` names a broker, else the error reply.
  std::string check_broker(const char* cmd, int64_t id) const {
    if (id >= 1 && id <= brokers_) return {};
    return std::string("error ") + cmd + ": broker id " + std::to_string(id) + " is not 1.." +
           std::to_string(brokers_);
  }

  // The partition count of an existing topic: known if this program created it, else read
  // through the observer client (a topic a client auto-created). Asks for the metadata of all
  // topics: the 2.0.2 mock auto-creates (4 partitions) any topic a metadata request names,
  // whatever the request's AllowAutoTopicCreation says.
  std::optional<int> partition_count(const std::string& topic, std::string& why) {
    if (auto it = created_.find(topic); it != created_.end()) return it->second;
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(observer_.get(), 1, nullptr, &md, kMetadataTimeoutMs);
    if (err) {
      why = "cannot read the metadata of topic " + topic + ": " + rd_kafka_err2str(err);
      return std::nullopt;
    }
    std::optional<int> result;
    for (int i = 0; i < md->topic_cnt; ++i) {
      const auto& t = md->topics[i];
      if (topic != t.topic) continue;
      if (t.err) {
        why = "topic " + topic + ": " + rd_kafka_err2str(t.err);
      } else {
        result = t.partition_cnt;
      }
    }
    if (!result && why.empty()) why = "no topic " + topic;
    rd_kafka_metadata_destroy(md);
    return result;
  }

  int brokers_ = 0;
  Handle owner_;
  Cluster cluster_;
  Handle observer_;
  std::string bootstrap_;
  std::map<std::string, int> created_;  // topics created here, with their partition counts
};

std::string usage_line() {
  return "ok commands: ping | create-topic NAME PARTITIONS | broker-down ID | broker-up ID | "
         "produce-errors COUNT ERRCODE [BROKER_ID] | produce-delay COUNT RTT_MS BROKER_ID | "
         "error-stack BROKER_ID | "
         "leader TOPIC PARTITION BROKER_ID";
}

std::string handle_command(MockBroker& mock, const std::string& line) {
  std::vector<std::string> w = split(line);
  if (w.empty()) return "error empty command; try `help`";
  const std::string& cmd = w[0];
  auto want_args = [&](size_t n, const char* form) -> std::optional<std::string> {
    if (w.size() != n + 1) {
      return "error " + cmd + " takes " + std::to_string(n) + " argument(s): " + form;
    }
    return std::nullopt;
  };
  auto int_arg = [&](size_t i, const char* what, std::optional<int64_t>& out) {
    out = parse_int(w[i]);
    if (!out) return "error " + cmd + ": " + what + " must be an integer, got `" + w[i] + "`";
    return std::string();
  };
  std::optional<int64_t> a, b;
  if (cmd == "ping") return "ok pong";
  if (cmd == "help") return usage_line();
  if (cmd == "create-topic") {
    if (auto e = want_args(2, "create-topic NAME PARTITIONS")) return *e;
    if (auto e = int_arg(2, "PARTITIONS", a); !e.empty()) return e;
    return mock.create_topic(w[1], *a);
  }
  if (cmd == "broker-down" || cmd == "broker-up") {
    if (auto e = want_args(1, "broker-down|broker-up ID")) return *e;
    if (auto e = int_arg(1, "ID", a); !e.empty()) return e;
    return mock.broker_state(*a, cmd == "broker-up");
  }
  if (cmd == "produce-errors") {
    if (w.size() != 3 && w.size() != 4) {
      return "error produce-errors takes 2 or 3 arguments: produce-errors COUNT ERRCODE "
             "[BROKER_ID]";
    }
    if (auto e = int_arg(1, "COUNT", a); !e.empty()) return e;
    if (w.size() == 4) {
      if (auto e = int_arg(3, "BROKER_ID", b); !e.empty()) return e;
    }
    auto code = parse_error_code(w[2]);
    if (!code) return "error produce-errors: unknown error code `" + w[2] + "`";
    if (*code == RD_KAFKA_RESP_ERR_NO_ERROR) return "error produce-errors: ERRCODE 0 is no error";
    return mock.produce_errors(*a, *code, b);
  }
  if (cmd == "produce-delay") {
    std::optional<int64_t> c;
    if (auto e = want_args(3, "produce-delay COUNT RTT_MS BROKER_ID")) return *e;
    if (auto e = int_arg(1, "COUNT", a); !e.empty()) return e;
    if (auto e = int_arg(2, "RTT_MS", b); !e.empty()) return e;
    if (auto e = int_arg(3, "BROKER_ID", c); !e.empty()) return e;
    return mock.produce_delay(*a, *b, *c);
  }
  if (cmd == "error-stack") {
    if (auto e = want_args(1, "error-stack BROKER_ID")) return *e;
    if (auto e = int_arg(1, "BROKER_ID", a); !e.empty()) return e;
    return mock.error_stack(*a);
  }
  if (cmd == "leader") {
    if (auto e = want_args(3, "leader TOPIC PARTITION BROKER_ID")) return *e;
    if (auto e = int_arg(2, "PARTITION", a); !e.empty()) return e;
    if (auto e = int_arg(3, "BROKER_ID", b); !e.empty()) return e;
    return mock.set_leader(w[1], *a, *b);
  }
  return "error unknown command `" + cmd + "`; try `help`";
}

struct Client {
  int fd = -1;
  std::string in;
};

void send_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away; its read side will notice
    off += static_cast<size_t>(n);
  }
}

int listen_loopback(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

// Serves the control socket until SIGTERM or SIGINT arrives on `sig_fd`.
void serve(MockBroker& mock, int listen_fd, int sig_fd) {
  std::map<int, Client> clients;
  while (true) {
    std::vector<pollfd> fds{{sig_fd, POLLIN, 0}, {listen_fd, POLLIN, 0}};
    for (const auto& [fd, c] : clients) fds.push_back({fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "imlog-kafka-mock: poll: %s\n", std::strerror(errno));
      break;
    }
    if (fds[0].revents & POLLIN) break;  // a stop signal
    if (fds[1].revents & POLLIN) {
      int cfd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (cfd >= 0) clients[cfd] = Client{cfd, {}};
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Client& c = clients[fds[i].fd];
      char buf[4096];
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      bool drop = n <= 0;
      if (n > 0) c.in.append(buf, static_cast<size_t>(n));
      for (size_t nl; !drop && (nl = c.in.find('\n')) != std::string::npos;) {
        std::string line = c.in.substr(0, nl);
        c.in.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        send_all(c.fd, handle_command(mock, line) + "\n");
      }
      if (!drop && c.in.size() > kMaxLine) {
        send_all(c.fd, "error line longer than " + std::to_string(kMaxLine) + " bytes\n");
        drop = true;
      }
      if (drop) {
        ::close(c.fd);
        clients.erase(fds[i].fd);
      }
    }
  }
  for (const auto& [fd, c] : clients) ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"librdkafka's mock Kafka cluster, with a control socket for tests"};
  int brokers = 3;
  std::string dir;
  std::vector<std::string> topics;
  app.add_option("--brokers", brokers, "number of brokers")->check(CLI::Range(1, 64));
  app.add_option("--dir", dir, "directory for the `bootstrap` and `control` files")->required();
  app.add_option("--topic", topics, "a topic to create, NAME:PARTITIONS (repeatable)");
  pid_t parent_pid = 0;
  app.add_option("--parent-pid", parent_pid, "the starting process: stop when it dies");
  CLI11_PARSE(app, argc, argv);

  // Block the stop signals before librdkafka starts threads, so they inherit the mask and the
  // signals reach only the signalfd read by the main loop.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  int sig_fd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (parent_pid > 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent_pid) ::raise(SIGTERM);  // it died before prctl: stop at once
  }
  if (sig_fd < 0) {
    std::fprintf(stderr, "imlog-kafka-mock: signalfd: %s\n", std::strerror(errno));
    return 1;
  }

  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "imlog-kafka-mock: cannot create --dir %s: %s\n", dir.c_str(), ec.message().c_str());
    return 1;
  }

  MockBroker mock;
  std::string why;
  if (!mock.start(brokers, why)) {
    std::fprintf(stderr, "imlog-kafka-mock: cannot start the mock cluster: %s\n", why.c_str());
    return 1;
  }
  for (const auto& spec : topics) {
    auto colon = spec.rfind(':');
    auto parts = colon == std::string::npos ? std::nullopt : parse_int(spec.substr(colon + 1));
    if (!parts) {
      std::fprintf(stderr, "imlog-kafka-mock: --topic %s: expected NAME:PARTITIONS\n", spec.c_str());
      mock.stop();
      return 2;
    }
    std::string reply = mock.create_topic(spec.substr(0, colon), *parts);
    if (!reply.starts_with("ok")) {
      std::fprintf(stderr, "imlog-kafka-mock: --topic %s: %s\n", spec.c_str(), reply.c_str());
      mock.stop();
      return 2;
    }
  }

  int port = 0;
  int listen_fd = listen_loopback(port);
  if (listen_fd < 0) {
    std::fprintf(stderr, "imlog-kafka-mock: cannot listen on 127.0.0.1: %s\n", std::strerror(errno));
    mock.stop();
    return 1;
  }
  std::filesystem::path base(dir);
  if (!write_atomically(base / "bootstrap", mock.bootstrap()) ||
      !write_atomically(base / "control", "127.0.0.1:" + std::to_string(port))) {
    std::fprintf(stderr, "imlog-kafka-mock: cannot write to --dir %s\n", dir.c_str());
    mock.stop();
    return 1;
  }
  std::printf("ready %s\n", mock.bootstrap().c_str());
  std::fflush(stdout);

  serve(mock, listen_fd, sig_fd);

  ::close(listen_fd);
  mock.stop();
  ::close(sig_fd);
  std::filesystem::remove(base / "control", ec);
  std::filesystem::remove(base / "bootstrap", ec);
  return 0;
}
