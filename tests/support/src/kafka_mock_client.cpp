// The test client of imlog-kafka-mock (see kafka_mock.h): finds or starts the mock broker and
// sends it control commands, one TCP connection per command (simple; a command is rare).

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "imlog/testing/kafka_mock.h"
#include "imlog/testing/support.h"

namespace imlog::testing {
namespace {

// How long the mock may take to start, and to answer one command (a create-topic or a leader
// move reads cluster metadata, bounded by 5 s inside the mock).
constexpr auto kStartTimeout = std::chrono::seconds(30);
constexpr int kCommandTimeoutSeconds = 30;

std::string read_first_line(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line) || line.empty()) {
    throw std::runtime_error("kafka mock: cannot read " + path.string() +
                             " (is imlog-kafka-mock running with --dir " + path.parent_path().string() +
                             "?)");
  }
  return line;
}

// A connected TCP socket to host:port, with send/receive time-outs; throws naming the address.
int connect_to(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    throw std::runtime_error("kafka mock: cannot resolve control host " + host + ": " + ::gai_strerror(rc));
  }
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  timeval tv{kCommandTimeoutSeconds, 0};
  if (fd >= 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  if (fd < 0 || ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    ::freeaddrinfo(res);
    throw std::runtime_error("kafka mock: cannot connect to control socket " + host + ":" + service + ": " +
                             std::strerror(err));
  }
  ::freeaddrinfo(res);
  return fd;
}

}  // namespace

// Reads `bootstrap` and `control` from the mock's --dir.
void KafkaMock::read_files(const std::filesystem::path& dir) {
  bootstrap_ = read_first_line(dir / "bootstrap");
  std::string control = read_first_line(dir / "control");
  auto colon = control.rfind(':');
  if (colon == std::string::npos) {
    throw std::runtime_error("kafka mock: " + (dir / "control").string() + " holds `" + control +
                             "`, not host:port");
  }
  control_host_ = control.substr(0, colon);
  control_port_ = std::stoi(control.substr(colon + 1));
}

std::unique_ptr<KafkaMock> KafkaMock::start_private() {
  std::unique_ptr<KafkaMock> m(new KafkaMock());
  m->owned_dir_ = std::make_unique<TempDir>("imlog-kafka-mock");
  auto program = (binary_dir() / "imlog-kafka-mock").string();
  // --parent-pid: the mock stops when this process dies, even by SIGKILL. (Linux ties that to
  // the thread that forks; tests start mocks from their main thread.)
  m->owned_ = std::make_unique<Subprocess>(
      Subprocess::start({program, "--brokers", "3", "--dir", m->owned_dir_->str(), "--parent-pid",
                         std::to_string(::getpid())}));
  auto line = m->owned_->read_line(kStartTimeout);
  if (!line || !line->starts_with("ready ")) {
    throw std::runtime_error("kafka mock: " + program + " did not print `ready` within " +
                             std::to_string(kStartTimeout.count()) + " s (got `" +
                             line.value_or("<nothing>") + "`)");
  }
  m->read_files(m->owned_dir_->path());
  return m;
}

KafkaMock& KafkaMock::shared() {
  // Destroyed at exit, which stops a mock this process started.
  static std::unique_ptr<KafkaMock> instance = [] {
    if (const char* env = std::getenv("IMLOG_KAFKA_MOCK_DIR"); env != nullptr && *env != '\0') {
      std::unique_ptr<KafkaMock> m(new KafkaMock());
      m->read_files(env);
      return m;
    }
    return start_private();
  }();
  return *instance;
}

KafkaMock::~KafkaMock() {
  if (owned_) {
    // Gently first, so the mock removes its files.
    owned_->signal(SIGTERM);
    if (!owned_->wait(std::chrono::seconds(5))) owned_->kill();
  }
}

std::string KafkaMock::command(const std::string& line) {
  int fd = connect_to(control_host_, control_port_);
  std::string out = line + "\n";
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      throw std::runtime_error("kafka mock: sending `" + line + "`: " + std::strerror(err));
    }
    off += static_cast<size_t>(n);
  }
  std::string reply;
  char buf[1024];
  while (reply.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n == 0 ? 0 : errno;
      ::close(fd);
      throw std::runtime_error("kafka mock: no reply to `" + line + "`" +
                               (err ? std::string(": ") + std::strerror(err) : std::string()));
    }
    reply.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  reply.erase(reply.find('\n'));
  if (reply == "ok") return {};
  if (reply.starts_with("ok ")) return reply.substr(3);
  throw std::runtime_error("kafka mock: `" + line + "` failed: " + reply);
}

void KafkaMock::create_topic(const std::string& name, int partitions) {
  command("create-topic " + name + " " + std::to_string(partitions));
}

void KafkaMock::broker_down(int id) { command("broker-down " + std::to_string(id)); }

void KafkaMock::broker_up(int id) { command("broker-up " + std::to_string(id)); }

void KafkaMock::produce_errors(int count, int error_code) {
  command("produce-errors " + std::to_string(count) + " " + std::to_string(error_code));
}

KafkaLogConfig KafkaMock::log_config() const {
  KafkaLogConfig c;
  std::stringstream in(bootstrap_);
  for (std::string b; std::getline(in, b, ',');) {
    if (!b.empty()) c.brokers.push_back(b);
  }
  c.client_id = "imlog-test";
  c.linger = std::chrono::milliseconds(1);
  c.fetch_wait = std::chrono::milliseconds(10);
  // The mock makes a rejoin after a member leaves wait session.timeout.ms - 1 s.
  c.session_timeout = std::chrono::milliseconds(6000);
  c.delivery_timeout = std::chrono::milliseconds(30000);
  return c;
}

std::string KafkaMock::unique_name(const std::string& prefix) {
  static std::atomic<uint64_t> counter{0};
  return prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

}  // namespace imlog::testing
