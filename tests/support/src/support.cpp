#include "imlog/testing/support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>

#ifndef IMLOG_BINARY_DIR
#error "IMLOG_BINARY_DIR must be defined by the build"
#endif

namespace imlog::testing {

TempDir::TempDir(std::string_view prefix) : owner_(::getpid()) {
  auto base = std::filesystem::temp_directory_path();
  std::random_device rd;
  for (int i = 0; i < 100; ++i) {
    auto candidate = base / (std::string(prefix) + "-" + std::to_string(::getpid()) + "-" +
                             std::to_string(rd() % 1000000));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory under " + base.string());
}

TempDir::~TempDir() {
  if (::getpid() != owner_) return;  // a forked child leaving: the directory is its parent's
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int sanitizer_slowdown() {
  static const int factor = [] {
    const char* set = std::getenv("IMLOG_SANITIZE");
    std::string_view s = set ? set : "";
    if (s.find("thread") != std::string_view::npos) return 10;
    if (s.find("address") != std::string_view::npos || s.find("undefined") != std::string_view::npos) return 3;
    // scripts/test --coverage: an unoptimised build counting every branch.
    const char* coverage = std::getenv("IMLOG_COVERAGE");
    if (coverage != nullptr && std::string_view(coverage) == "ON") return 3;
    return 1;
  }();
  return factor;
}

void die_with_parent(pid_t parent) {
  // The signal survives execve (of a binary that does not change credentials); a parent that died
  // between fork and prctl is caught by getppid, which then names a reaper instead.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(126);
}

Subprocess Subprocess::start(const std::vector<std::string>& argv,
                             const std::vector<std::string>& env) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    die_with_parent(parent);
    ::dup2(fds[1], STDOUT_FILENO);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "exec %s failed: %s\n", args[0], std::strerror(errno));
    ::_exit(127);
  }
  ::close(fds[1]);
  Subprocess p;
  p.pid_ = pid;
  p.out_fd_ = fds[0];
  return p;
}

Subprocess::Subprocess(Subprocess&& o) noexcept { *this = std::move(o); }

Subprocess& Subprocess::operator=(Subprocess&& o) noexcept {
  std::swap(pid_, o.pid_);
  std::swap(out_fd_, o.out_fd_);
  std::swap(buffer_, o.buffer_);
  std::swap(reaped_, o.reaped_);
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) kill();
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::optional<std::string> Subprocess::read_line(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd pfd{out_fd_, POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (r <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;  // end of output
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

void Subprocess::signal(int sig) {
  if (pid_ > 0 && !reaped_) ::kill(pid_, sig);
}

std::optional<int> Subprocess::wait(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      return status;
    }
    if (std::chrono::steady_clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void Subprocess::kill() {
  if (pid_ <= 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  reaped_ = true;
}

std::filesystem::path binary_dir() { return IMLOG_BINARY_DIR; }

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

namespace {

// The lowest port the kernel hands out to outgoing connections (ip_local_port_range).
int ephemeral_low() {
  int low = 32768;
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%d", &low) != 1) low = 32768;
    std::fclose(f);
  }
  return low;
}

bool bindable(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // as the servers bind
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// A random port below the ephemeral range: a port the kernel gave out (bind to port 0) is free
// only until the next outgoing connection of any process takes it as its local port, and the
// tests' Kafka, MySQL and Redis clients open many. Random, so that tests running in parallel
// rarely pick the same one; never the same one twice in a process.
int free_port() {
  static std::mutex mu;
  static std::set<int> given;
  static std::mt19937 rng(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  const int high = ephemeral_low() - 1, low = std::min(20000, high / 2);
  std::lock_guard lk(mu);
  std::uniform_int_distribution<int> pick(low, high);
  for (int i = 0; i < 1000; ++i) {
    int port = pick(rng);
    if (given.contains(port) || !bindable(port)) continue;
    given.insert(port);
    return port;
  }
  throw std::runtime_error("free_port: no free port found below the ephemeral range");
}

CommandRun run_command(const std::vector<std::string>& argv) {
  std::string cmd = "exec";
  for (const auto& a : argv) cmd += " '" + a + "'";
  auto p = Subprocess::start({"/bin/sh", "-c", cmd + " 2>&1"});
  CommandRun r;
  while (auto line = p.read_line(std::chrono::seconds(300))) r.out += *line + "\n";
  auto st = p.wait(std::chrono::seconds(60));
  if (st && WIFEXITED(*st)) {
    r.status = WEXITSTATUS(*st);
  } else {
    r.out += st ? "(ended by signal " + std::to_string(WTERMSIG(*st)) + ")\n" : "(did not end)\n";
  }
  return r;
}

}  // namespace imlog::testing
