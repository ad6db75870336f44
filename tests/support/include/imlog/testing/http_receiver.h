#pragma once
// An HTTP/1.1 server on a free loopback port that records each request (head and body, as
// received) and answers it: 200 with no body unless a responder says otherwise (a status, a body,
// a delay before answering — longer than the client's time-out, it is a time-out). Each
// connection has a thread of its own, so a slow answer does not hold the others: the far end of a
// push webhook in the push tests. Thread-safe.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace imlog::testing {

struct HttpAnswer {
  HttpAnswer(int s = 200, std::string b = {}, std::chrono::milliseconds d = {}) : status(s), body(std::move(b)), delay(d) {}
  int status;
  std::string body;
  std::chrono::milliseconds delay;  // before answering
};

// A listening TCP socket on a free loopback port (backlog 64); sets `port`.
inline int listen_on_loopback(int& port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(fd, 64), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

class HttpReceiver {
 public:
  // Called for each request (the whole request as received) on its connection's thread.
  using Responder = std::function<HttpAnswer(const std::string& request)>;

  explicit HttpReceiver(Responder responder = {}) : responder_(std::move(responder)) {
    fd_ = listen_on_loopback(port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~HttpReceiver() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();  // delayed answers end now
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::vector<std::thread> connections;
    {
      std::lock_guard lock(mu_);
      connections.swap(connections_);
    }
    for (auto& t : connections) t.join();
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::vector<std::string> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

  // The value of header `name` in `request` (case-sensitive name), or "".
  static std::string header(const std::string& request, const std::string& name) {
    auto head_end = request.find("\r\n\r\n");
    auto at = request.find("\r\n" + name + ": ");
    if (at == std::string::npos || at > head_end) return "";
    at += 4 + name.size();
    return request.substr(at, request.find("\r\n", at) - at);
  }
  static std::string body(const std::string& request) {
    auto head_end = request.find("\r\n\r\n");
    return head_end == std::string::npos ? "" : request.substr(head_end + 4);
  }

 private:
  void serve() {
    for (;;) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::lock_guard lock(mu_);
      connections_.emplace_back([this, c] { answer(c); });
    }
  }

  void answer(int c) {
    std::string req;
    char buf[4096];
    size_t need = std::string::npos;
    while (req.size() < need) {
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
      auto head = req.find("\r\n\r\n");
      if (head != std::string::npos && need == std::string::npos) {
        auto cl = req.find("Content-Length: ");
        size_t body = cl == std::string::npos ? 0 : std::stoul(req.substr(cl + 16));
        need = head + 4 + body;
      }
    }
    if (req.size() < need || need == std::string::npos) {
      ::close(c);  // the sender went away mid-request (a killed worker): nothing was received
      return;
    }
    {
      // Recorded before the answer: a sender that got its answer finds its request here.
      std::lock_guard lock(mu_);
      requests_.push_back(req);
    }
    HttpAnswer a = responder_ ? responder_(req) : HttpAnswer{};
    if (a.delay.count() > 0) {
      std::unique_lock lock(mu_);
      if (cv_.wait_for(lock, a.delay, [this] { return closing_; })) {
        ::close(c);
        return;
      }
    }
    std::string answer = "HTTP/1.1 " + std::to_string(a.status) + " X\r\nContent-Type: application/json\r\n" +
                         "Content-Length: " + std::to_string(a.body.size()) + "\r\nConnection: close\r\n\r\n" + a.body;
    (void)::write(c, answer.data(), answer.size());
    ::close(c);
  }

  Responder responder_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::vector<std::thread> connections_;
  std::vector<std::string> requests_;
};

}  // namespace imlog::testing
