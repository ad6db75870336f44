#pragma once
// An HTTP/2 server over cleartext with prior knowledge (h2c, RFC 9113 §3.3) on a free loopback
// port, by nghttp2: the far end of the APNs provider in the push tests. It records each request
// (method, path, headers, body) and answers it as a responder says (status, body, a delay). A
// thread per connection. Thread-safe.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "imlog/testing/http_receiver.h"

namespace imlog::testing {

struct H2Request {
  std::string method, path;
  std::map<std::string, std::string> headers;  // lowercase names, as HTTP/2 sends them
  std::string body;
};

struct H2Answer {
  H2Answer(int s = 200, std::string b = {}, std::chrono::milliseconds d = {}) : status(s), body(std::move(b)), delay(d) {}
  int status;
  std::string body;
  std::chrono::milliseconds delay;
};

class H2Receiver {
 public:
  using Responder = std::function<H2Answer(const H2Request&)>;

  explicit H2Receiver(Responder responder = {}) : responder_(std::move(responder)) {
    fd_ = listen_on_loopback(port_);
    thread_ = std::thread([this] { serve(); });
  }
  ~H2Receiver() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    cv_.notify_all();
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    std::vector<std::thread> connections;
    {
      std::lock_guard lock(mu_);
      connections.swap(connections_);
      for (int c : open_) ::shutdown(c, SHUT_RDWR);
    }
    for (auto& t : connections) t.join();
  }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::vector<H2Request> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  struct Stream {
    H2Request req;
    std::string answer;  // the response body being sent
    size_t sent = 0;
  };
  struct Connection {
    H2Receiver* self = nullptr;
    int fd = -1;
    nghttp2_session* session = nullptr;
    std::map<int32_t, Stream> streams;
  };

  void serve() {
    for (;;) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::lock_guard lock(mu_);
      open_.push_back(c);
      connections_.emplace_back([this, c] { run(c); });
    }
  }

  static ssize_t on_send(nghttp2_session*, const uint8_t* data, size_t length, int, void* user) {
    auto* conn = static_cast<Connection*>(user);
    ssize_t n = ::send(conn->fd, data, length, MSG_NOSIGNAL);
    return n < 0 ? static_cast<ssize_t>(NGHTTP2_ERR_CALLBACK_FAILURE) : n;
  }
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    auto* conn = static_cast<Connection*>(user);
    auto& req = conn->streams[frame->hd.stream_id].req;
    std::string n(reinterpret_cast<const char*>(name), namelen), v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") req.method = v;
    else if (n == ":path") req.path = v;
    else req.headers[n] = v;
    return 0;
  }
  static int on_data(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len, void* user) {
    auto* conn = static_cast<Connection*>(user);
    conn->streams[stream_id].req.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  static ssize_t read_answer(nghttp2_session*, int32_t stream_id, uint8_t* buf, size_t length, uint32_t* flags,
                             nghttp2_data_source*, void* user) {
    auto* conn = static_cast<Connection*>(user);
    auto& s = conn->streams[stream_id];
    size_t n = std::min(length, s.answer.size() - s.sent);
    std::memcpy(buf, s.answer.data() + s.sent, n);
    s.sent += n;
    if (s.sent == s.answer.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  static int on_frame(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* conn = static_cast<Connection*>(user);
    bool request_done = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    if (!request_done) return 0;
    auto& s = conn->streams[frame->hd.stream_id];
    {
      std::lock_guard lock(conn->self->mu_);
      conn->self->requests_.push_back(s.req);  // recorded before the answer
    }
    H2Answer a = conn->self->responder_ ? conn->self->responder_(s.req) : H2Answer{};
    if (a.delay.count() > 0) {
      std::unique_lock lock(conn->self->mu_);
      if (conn->self->cv_.wait_for(lock, a.delay, [conn] { return conn->self->closing_; })) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
    }
    s.answer = a.body;
    std::string status = std::to_string(a.status), length = std::to_string(a.body.size());
    nghttp2_nv headers[] = {
        {(uint8_t*)":status", (uint8_t*)status.data(), 7, status.size(), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t*)"content-length", (uint8_t*)length.data(), 14, length.size(), NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider body{};
    body.read_callback = read_answer;
    return nghttp2_submit_response(session, frame->hd.stream_id, headers, 2, &body) == 0 ? 0
                                                                                          : NGHTTP2_ERR_CALLBACK_FAILURE;
  }

  void run(int fd) {
    Connection conn;
    conn.self = this;
    conn.fd = fd;
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, on_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_server_new(&conn.session, cb, &conn);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
    nghttp2_submit_settings(conn.session, NGHTTP2_FLAG_NONE, settings, 1);
    uint8_t buf[16384];
    while (nghttp2_session_send(conn.session) == 0 &&
           (nghttp2_session_want_read(conn.session) || nghttp2_session_want_write(conn.session))) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (nghttp2_session_mem_recv(conn.session, buf, static_cast<size_t>(n)) < 0) break;
    }
    nghttp2_session_del(conn.session);
    {
      std::lock_guard lock(mu_);
      std::erase(open_, fd);  // the destructor no longer shuts it down (the number may be reused)
      ::close(fd);
    }
  }

  Responder responder_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::vector<int> open_;
  std::vector<std::thread> connections_;
  std::vector<H2Request> requests_;
};

}  // namespace imlog::testing
