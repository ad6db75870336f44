#pragma once
// The stream layer between the TCP socket and websocket::stream of a WebSocket session. Used only
// by ws_session.cpp. Two jobs:
//
// Reads: every byte read runs through a FrameScanner (frame_scanner.h says why: text frames are
// seen by Beast as binary, so the session validates UTF-8 itself and keeps the connection), and
// every read leaves the scanner a mark of what had arrived by then: when a read fills its buffer,
// the bytes the kernel still holds too (one FIONREAD, only then).
//
// Writes: the session writes its data frames itself, several queued frames framed (RFC 6455 §5.2,
// server to client: unmasked) into one socket write — write_frames() — instead of one Beast
// message, and one syscall, per frame. The write is tried at once on the (non-blocking) socket,
// which nearly always takes it all: no asynchronous operation, handler allocation or completion
// post; only what the socket did not take is written asynchronously. Beast still writes its own
// control frames (pong, keep-alive ping, close) through async_write_some(). The two never
// interleave on the socket:
//
//   a raw write waits while Beast is in the middle of a frame (a write_some in flight, or bytes of
//   its current frame still to come — Beast writes a frame with one or more write_some calls), and
//   while Beast waits to write (control frames go first);
//   a Beast write_some waits while a raw write is in flight.
//
// Each side waits on a steady_timer that never expires (a gate), cancelled by the other side when
// it is done, and looks again when woken: Asio's completion-handler machinery, so a waiting handler
// may be move-only. Nothing waits forever: a waiting handler keeps the session, and so this layer,
// alive, and the side it waits for always finishes (completes or fails).
//
// Threading: like the stream it wraps — one strand; every member is used on it.

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include "frame_scanner.h"

namespace imlog::gw {

// The RFC 6455 header of an unmasked, final text (or binary) frame of `size` payload bytes, into
// `out`; returns its length (2, 4 or 10).
size_t data_frame_header(bool binary, uint64_t size, std::array<unsigned char, 10>& out);

template <class Next>
class FrameLayer {
 public:
  using executor_type = typename Next::executor_type;
  using next_layer_type = Next;

  template <class... Args>
  explicit FrameLayer(Args&&... args)
      : next_(std::forward<Args>(args)...), beast_gate_(next_.get_executor()), raw_gate_(next_.get_executor()) {
    beast_gate_.expires_at(boost::asio::steady_timer::time_point::max());
    raw_gate_.expires_at(boost::asio::steady_timer::time_point::max());
  }

  executor_type get_executor() noexcept { return next_.get_executor(); }
  Next& next_layer() noexcept { return next_; }
  const Next& next_layer() const noexcept { return next_; }
  FrameScanner& scanner() noexcept { return scanner_; }
  // When a read last brought bytes (any frame, control frames included), or count_as_read_now().
  FrameScanner::Clock::time_point last_read() const noexcept { return last_read_; }
  void count_as_read_now() noexcept { last_read_ = FrameScanner::Clock::now(); }
  // The handshake is done: from now on Beast's writes are frames (before, its HTTP response), and
  // the socket is non-blocking for write_frames()' first try (Asio's own asynchronous operations
  // behave the same either way; the session makes no synchronous call that would block).
  void handshake_done() noexcept {
    framing_ = true;
    last_read_ = FrameScanner::Clock::now();
    boost::beast::error_code ec;
    next_.non_blocking(true, ec);
    try_at_once_ = !ec;  // else every write takes the asynchronous way: a try would block
  }

  // ---- reads ---------------------------------------------------------------------------------

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(boost::beast::error_code, std::size_t)>(
        [this](auto&& h, const MutableBuffers& b) {
          auto ex = boost::asio::get_associated_executor(h, next_.get_executor());
          next_.async_read_some(
              b, boost::asio::bind_executor(ex, [this, b, h = std::move(h)](boost::beast::error_code ec,
                                                                              std::size_t n) mutable {
                scan(b, n);
                mark_arrival(boost::asio::buffer_size(b), n, ec);
                std::move(h)(ec, n);
              }));
        },
        handler, buffers);
  }

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, boost::beast::error_code& ec) {
    std::size_t n = next_.read_some(buffers, ec);
    scan(buffers, n);
    mark_arrival(boost::asio::buffer_size(buffers), n, ec);
    return n;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    std::size_t n = next_.read_some(buffers);
    scan(buffers, n);
    mark_arrival(boost::asio::buffer_size(buffers), n, {});
    return n;
  }

  // ---- Beast's writes (control frames) -------------------------------------------------------

  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return boost::asio::async_initiate<Handler, void(boost::beast::error_code, std::size_t)>(
        [this](auto&& h, const ConstBuffers& b) { beast_when_clear(b, std::move(h)); }, handler, buffers);
  }

  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, boost::beast::error_code& ec) {
    return next_.write_some(buffers, ec);
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    return next_.write_some(buffers);
  }

  // ---- the session's writes (data frames) ----------------------------------------------------

  // Writes `payloads` as text frames (binary ones when `binary`), in order, in as few socket
  // writes as the kernel allows (normally one). Returns true when the socket took every byte at
  // once: `handler` is then not called. Otherwise the rest is written in the background and
  // `handler(ec, bytes)` runs on the stream's executor when it is done or failed. The payloads must
  // stay alive until then. One call at a time.
  template <class Handler>
  bool write_frames(const std::vector<std::shared_ptr<const std::string>>& payloads, bool binary, Handler&& handler) {
    headers_.resize(payloads.size());
    buffers_.clear();
    buffers_.reserve(payloads.size() * 2);
    for (size_t i = 0; i < payloads.size(); ++i) {
      size_t n = data_frame_header(binary, payloads[i]->size(), headers_[i]);
      buffers_.emplace_back(headers_[i].data(), n);
      buffers_.emplace_back(payloads[i]->data(), payloads[i]->size());
    }
    if (!raw_clear()) {
      raw_wait(std::forward<Handler>(handler));
      return false;
    }
    if (raw_write_now()) return true;
    raw_write_rest(std::forward<Handler>(handler));
    return false;
  }

 private:
  template <class MutableBuffers>
  void scan(const MutableBuffers& buffers, std::size_t n) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers); n > 0 && it != boost::asio::buffer_sequence_end(buffers);
         ++it) {
      boost::asio::mutable_buffer b = *it;
      std::size_t k = std::min(n, b.size());
      scanner_.scan(static_cast<unsigned char*>(b.data()), k);
      n -= k;
    }
  }

  // A read that filled its buffer may have left more in the kernel: ask how much, so the scanner
  // knows those bytes were there already. A read that did not took everything there was.
  void mark_arrival(std::size_t asked, std::size_t got, const boost::beast::error_code& ec) {
    if (ec || got == 0) return;
    uint64_t more = 0;
    if (got == asked) {
      boost::beast::error_code ignored;
      more = next_.available(ignored);  // 0 on error: the mark only gets less precise
    }
    last_read_ = FrameScanner::Clock::now();
    scanner_.arrived(more, last_read_);
  }

  template <class ConstBuffers, class Handler>
  void beast_when_clear(const ConstBuffers& b, Handler&& h) {
    if (!raw_writing_) {
      beast_waiting_ = false;
      return beast_write(b, std::forward<Handler>(h));
    }
    beast_waiting_ = true;
    beast_gate_.async_wait([this, b, h = std::forward<Handler>(h)](boost::beast::error_code) mutable {
      beast_when_clear(b, std::move(h));
    });
  }

  // A raw write may go: Beast is neither writing nor in the middle of a frame nor waiting to write.
  bool raw_clear() const noexcept { return !beast_writing_ && beast_frame_left_ == 0 && !beast_waiting_; }

  template <class Handler>
  void raw_wait(Handler&& h) {
    raw_waiting_ = true;
    raw_gate_.async_wait([this, h = std::forward<Handler>(h)](boost::beast::error_code) mutable {
      if (!raw_clear()) return raw_wait(std::move(h));
      raw_waiting_ = false;
      // Already inside a completion handler: a write done at once completes here.
      if (raw_write_now()) return std::move(h)(boost::beast::error_code{}, raw_bytes_);
      raw_write_rest(std::move(h));
    });
  }

  template <class ConstBuffers, class Handler>
  void beast_write(const ConstBuffers& b, Handler&& h) {
    if (framing_ && beast_frame_left_ == 0) beast_frame_left_ = frame_size(b);
    beast_writing_ = true;
    auto ex = boost::asio::get_associated_executor(h, next_.get_executor());
    next_.async_write_some(
        b, boost::asio::bind_executor(ex, [this, h = std::forward<Handler>(h)](boost::beast::error_code ec,
                                                                               std::size_t n) mutable {
          beast_writing_ = false;
          beast_frame_left_ = ec ? 0 : beast_frame_left_ - std::min<uint64_t>(beast_frame_left_, n);
          if (beast_frame_left_ == 0 && raw_waiting_) raw_gate_.cancel();  // a waiting raw write may go
          std::move(h)(ec, n);
        }));
  }

  // Writes as much of buffers_ as the socket takes without blocking and drops it from buffers_;
  // true when that was all. One write_some passes at most 64 buffers (Asio), so it goes on while
  // the socket takes everything offered. An error stops it: the asynchronous write reports it.
  bool raw_write_now() {
    raw_bytes_ = boost::asio::buffer_size(buffers_);
    raw_done_now_ = 0;
    while (try_at_once_) {
      boost::beast::error_code ec;
      std::size_t n = next_.write_some(buffers_, ec);
      if (ec) return false;
      raw_done_now_ += n;
      if (raw_done_now_ == raw_bytes_) {
        raw_done_now_ = 0;
        if (beast_waiting_) beast_gate_.cancel();  // a waiting Beast write may go
        return true;
      }
      auto it = buffers_.begin();
      for (; it != buffers_.end() && n >= it->size(); ++it) n -= it->size();
      buffers_.erase(buffers_.begin(), it);
      if (n > 0) buffers_.front() += n;
    }
    return false;
  }

  // The rest of buffers_, asynchronously; `handler` gets the bytes of the whole write.
  template <class Handler>
  void raw_write_rest(Handler&& handler) {
    raw_writing_ = true;
    boost::asio::async_write(next_, buffers_,
                             [this, h = std::forward<Handler>(handler)](boost::beast::error_code ec, std::size_t n) mutable {
                               raw_writing_ = false;
                               if (beast_waiting_) beast_gate_.cancel();  // a waiting Beast write may go
                               std::size_t before = raw_done_now_;
                               raw_done_now_ = 0;
                               std::move(h)(ec, before + n);
                             });
  }

  // The whole size (header and payload) of the frame starting at the front of `b`, from its header.
  template <class ConstBuffers>
  static uint64_t frame_size(const ConstBuffers& b) {
    unsigned char h[10] = {};
    size_t got = boost::asio::buffer_copy(boost::asio::buffer(h), b);
    if (got < 2) return got;
    unsigned len7 = h[1] & 0x7f;
    uint64_t mask = (h[1] & 0x80) ? 4 : 0;
    if (len7 < 126) return 2 + mask + len7;
    if (len7 == 126) return 4 + mask + ((uint64_t{h[2]} << 8) | h[3]);
    uint64_t len = 0;
    for (int k = 0; k < 8; ++k) len = (len << 8) | h[2 + k];
    return 10 + mask + len;
  }

  Next next_;
  FrameScanner scanner_;
  FrameScanner::Clock::time_point last_read_{};
  boost::asio::steady_timer beast_gate_;  // Beast's write waits here for a raw write to end
  boost::asio::steady_timer raw_gate_;    // a raw write waits here for Beast's frame to end
  bool framing_ = false;  // past the handshake
  bool try_at_once_ = false;  // the socket is non-blocking: write_frames() tries a write at once
  bool raw_writing_ = false;  // an asynchronous raw write is in flight
  bool raw_waiting_ = false;  // a raw write waits at raw_gate_
  bool beast_writing_ = false;
  bool beast_waiting_ = false;  // a Beast write_some waits at beast_gate_
  uint64_t beast_frame_left_ = 0;  // bytes of Beast's current frame not yet written
  std::vector<std::array<unsigned char, 10>> headers_;  // of the raw write in flight
  std::vector<boost::asio::const_buffer> buffers_;     // what of it is still to write
  std::size_t raw_bytes_ = 0;     // the whole raw write
  std::size_t raw_done_now_ = 0;  // of it, what the first try took
};

// The WebSocket close handshake tears down the layer below (found by ADL).
template <class Next>
void teardown(boost::beast::role_type role, FrameLayer<Next>& s, boost::beast::error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, s.next_layer(), ec);
}

template <class Next, class Handler>
void async_teardown(boost::beast::role_type role, FrameLayer<Next>& s, Handler&& handler) {
  using boost::beast::websocket::async_teardown;
  async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
}

}  // namespace imlog::gw
